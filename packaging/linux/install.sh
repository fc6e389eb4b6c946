#!/bin/sh
# Install empanada-desktop for the current user (no root needed, no network used):
#   ./install.sh             copies this folder to ~/.local/opt/empanada-desktop and adds the
#                            menu entry, the icon and ~/.local/bin/empanada-desktop(-cli)
#   ./install.sh --uninstall removes all of that again (your models and runs are kept)
# PREFIX=/opt sudo -E ./install.sh installs for everyone (menu entry in /usr/share).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-$HOME/.local}
if [ "$prefix" = "$HOME/.local" ]; then
    target=$prefix/opt/empanada-desktop
    data=$prefix/share
    bin=$prefix/bin
else
    target=$prefix/empanada-desktop
    data=/usr/share
    bin=/usr/local/bin
fi
desktop=$data/applications/empanada-desktop.desktop
icon=$data/icons/hicolor/256x256/apps/empanada-desktop.png

if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$target" "$desktop" "$icon" "$bin/empanada-desktop" "$bin/empanada-desktop-cli"
    echo "empanada-desktop removed (models and runs in your app folder are kept)"
    exit 0
fi

if [ "$here" != "$target" ]; then
    mkdir -p "$(dirname "$target")"
    rm -rf "$target"
    cp -a "$here" "$target"
fi
mkdir -p "$(dirname "$desktop")" "$(dirname "$icon")" "$bin"
cp "$here/share/icons/hicolor/256x256/apps/empanada-desktop.png" "$icon"
sed -e "s|^Exec=.*|Exec=\"$target/empanada-desktop\" %F|" \
    -e "s|^TryExec=.*|TryExec=$target/empanada-desktop|" \
    "$here/share/applications/empanada-desktop.desktop" > "$desktop"
ln -sf "$target/empanada-desktop" "$bin/empanada-desktop"
ln -sf "$target/empanada-desktop" "$bin/empanada-desktop-cli"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$(dirname "$desktop")" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q "$data/icons/hicolor" || true
echo "empanada-desktop installed in $target; start it from the applications menu or with $bin/empanada-desktop"
