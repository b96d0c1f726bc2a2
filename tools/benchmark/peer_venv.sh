# Shared by the set-up scripts of the benchmarks' peers (setup_*_env.sh): a separate virtual
# environment for the code we compare against, reusing the project venv's torch.  Sourced, not
# run.  The caller sets, then calls `peer_venv_main`:
#   NAME        short name for log lines and the stamp file (e.g. recbole)
#   VENV        where the venv lives
#   DEPS        packages installed with their dependencies (may be empty)
#   NODEPS      packages installed with --no-deps after DEPS (may be empty)
#   PTH_FIRST   1: make the project's site-packages visible before pip runs, so that pip takes
#               torch from there instead of downloading it; 0: only after pip, so that pip
#               installs this venv's own copy of everything it is asked for (numpy < 2, ...)
#   check()     a function that succeeds when the venv is usable (quietly)
#   describe()  a function printing one line of versions once ready
# torch is never installed again: a .pth file appends the project venv's site-packages to this
# venv's sys.path, so the same torch build serves both sides of a comparison.  Whatever this venv
# installs itself comes first on sys.path and shadows the project's copies.  Every pip call
# goes through requirements/constraints.txt, as in tools/setup_env.sh (setuptools < 81).
# Prints the venv's python on stdout (the only line on stdout); idempotent.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAIN_VENV="${MMEXT_VENV:-$ROOT/.venv}"

log() { printf '[setup_%s_env %(%H:%M:%S)T] %s\n' "$NAME" -1 "$*" >&2; }

peer_venv_main() {
    [[ -x "$MAIN_VENV/bin/python" ]] || { log "no project venv at $MAIN_VENV: run tools/setup_env.sh"; exit 1; }
    local main_site stamp_file start py bench_site
    main_site="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    stamp_file="$VENV/.mmext-$NAME-stamp"
    stamp_of() { printf '%s\n' "${DEPS[@]}" -- "${NODEPS[@]}" "$PTH_FIRST" "$main_site" | sha256sum | cut -c1-16; }
    if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$(stamp_of)" ]] && check; then
        echo "$VENV/bin/python"
        exit 0
    fi
    start=$SECONDS
    if [[ ! -x "$VENV/bin/python" ]]; then
        py="$("$MAIN_VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
        log "creating $VENV with $py (same interpreter version as the project venv)"
        mkdir -p "$(dirname "$VENV")"
        "$py" -m venv "$VENV"
    fi
    bench_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    local pth="$bench_site/zz_mmext_project_site.pth"
    if [[ "$PTH_FIRST" == 1 ]]; then echo "$main_site" >"$pth"; else rm -f "$pth"; fi
    local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$ROOT/requirements/constraints.txt")
    if ((${#DEPS[@]})); then
        log "installing ${DEPS[*]} with their dependencies"
        "${pip[@]}" "${DEPS[@]}"
    fi
    if ((${#NODEPS[@]})); then
        log "installing ${NODEPS[*]} (--no-deps)"
        "${pip[@]}" --no-deps "${NODEPS[@]}"
    fi
    echo "$main_site" >"$pth"
    check || { log "the $NAME venv at $VENV does not work; see the errors above"; exit 1; }
    stamp_of >"$stamp_file"
    log "$NAME venv ready in $((SECONDS - start)) s: $(describe)"
    echo "$VENV/bin/python"
}
