# Sourced by the GPU run scripts (from the repository root): wheels an offline GPU host lacks go into
# /tmp/site, which comes first on the import path, then this checkout's src/.
#   install_wheels DIR   pip-installs DIR/*.whl (none: nothing to do); returns pip's exit status
install_wheels() {
  compgen -G "$1/*.whl" >/dev/null || return 0
  python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site "$1"/*.whl
}
export PYTHONPATH=/tmp/site:src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
