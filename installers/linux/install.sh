#!/bin/sh
# Add Tandem to this user's application menu and PATH, from wherever this folder was unpacked.
#   ./install.sh             menu entry (~/.local/share/applications), icon, ~/.local/bin/tandem
#   ./install.sh --uninstall remove them again (your chats and models stay in ~/.local/share/tandem)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps=$data/applications
icons=$data/icons/hicolor/256x256/apps
bin=$HOME/.local/bin

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$apps/tandem.desktop" "$icons/tandem.png"
    if [ -L "$bin/tandem" ]; then rm -f "$bin/tandem"; fi
    echo "Tandem removed from the menu. Delete $here to remove the program."
    exit 0
fi

mkdir -p "$apps" "$icons" "$bin"
cp "$here/tandem.png" "$icons/tandem.png"
sed "s|^Exec=tandem|Exec=\"$here/tandem\"|" "$here/tandem.desktop" > "$apps/tandem.desktop"
ln -sf "$here/tandem" "$bin/tandem"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
echo "Tandem is in your application menu; in a terminal: tandem (app), tandem chat, tandem --help."
