"""The viewer: the document, the image viewer, the labels layer and the annotation tools."""
