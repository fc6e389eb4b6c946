#!/bin/sh
# Make empanada-desktop-<version>-macos-<arch>.dmg from the .app that build.py made.
# Run on a Mac (see packaging/README.md):
#   python3 packaging/build.py --clean-venv [--models ~/.empanada]
#   packaging/macos/make_dmg.sh [DIST]            # DIST defaults to dist/
# Optional signing and notarisation (needed so Gatekeeper opens it without a right-click):
#   CODESIGN_IDENTITY="Developer ID Application: ..." NOTARY_PROFILE=<keychain profile> \
#     packaging/macos/make_dmg.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dist=${1:-$root/dist}
app="$dist/empanada-desktop.app"
[ -d "$app" ] || { echo "no $app: run python3 packaging/build.py first" >&2; exit 1; }
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/empanada_desktop/__init__.py")
arch=$(uname -m)
dmg="$dist/empanada-desktop-$version-macos-$arch.dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    # Sign inside out: every library, then both executables, then the bundle.
    find "$app/Contents" -type f \( -name "*.dylib" -o -name "*.so" \) -exec \
        codesign --force --timestamp --options runtime --sign "$CODESIGN_IDENTITY" {} +
    codesign --force --timestamp --options runtime --sign "$CODESIGN_IDENTITY" \
        "$app/Contents/MacOS/empanada-desktop-cli" "$app/Contents/MacOS/empanada-desktop"
    codesign --force --timestamp --options runtime --sign "$CODESIGN_IDENTITY" "$app"
    codesign --verify --deep --strict "$app"
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
rm -f "$dmg"
hdiutil create -volname "empanada-desktop $version" -srcfolder "$staging" -fs HFS+ \
    -format UDZO -imagekey zlib-level=9 "$dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$dmg"
    if [ -n "${NOTARY_PROFILE:-}" ]; then
        xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
        xcrun stapler staple "$dmg"
    fi
fi
echo "$dmg ($(du -h "$dmg" | cut -f1))"
