"""The finetune wizard's page ids, in the order the pages come (shared by the wizard and its pages)."""

from __future__ import annotations

PAGE_MODEL, PAGE_DATA, PAGE_SETTINGS, PAGE_RUN, PAGE_RESULTS = range(5)
PAGE_NEW_MODEL = 5  # "Train a new model": comes between the model page and the data page

PAGE_NAMES = {
    PAGE_MODEL: "model",
    PAGE_DATA: "data",
    PAGE_SETTINGS: "settings",
    PAGE_RUN: "run",
    PAGE_RESULTS: "results",
    PAGE_NEW_MODEL: "new_model",
}
