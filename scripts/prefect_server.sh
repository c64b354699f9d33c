#!/usr/bin/env bash
# Sourced by scripts/demo.sh: make sure a Prefect API is there for the flows.
#
# - A configured API (PREFECT_API_URL in the environment or the active Prefect profile) is used as is.
# - Otherwise a local `prefect server start` on 127.0.0.1:${PREFECT_TORCH_PORT:-4200} is used, started in
#   the background if it is not running yet (its UI stays up after the demo; `prefect server stop` ends it).
#   Then demo_server holds its API URL, which scripts/demo.sh prints for the user's own flows. The Prefect
#   profile is left alone: one pointing at this server would break every flow after `prefect server stop`.
demo_server=""
configured="$(python -c 'from prefect.settings import get_current_settings as s; print(s().api.url or "")' 2>/dev/null)"
if [[ -z "$configured" ]]; then
    port="${PREFECT_TORCH_PORT:-4200}"
    export PREFECT_API_URL="http://127.0.0.1:$port/api" PREFECT_UI_URL="http://127.0.0.1:$port"
    healthy() { python -c "import urllib.request as u; u.urlopen('$PREFECT_API_URL/health', timeout=2)" 2>/dev/null; }
    if ! healthy; then
        echo "[demo] starting a local Prefect server, UI at $PREFECT_UI_URL (stop it with: prefect server stop)" >&2
        PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_API_URL="$PREFECT_API_URL" \
            prefect server start --background --host 127.0.0.1 --port "$port" >/dev/null
        for _ in $(seq 180); do healthy && break; sleep 1; done
        healthy || { echo "[demo] the Prefect server did not answer at $PREFECT_API_URL within 180 s" >&2; exit 1; }
    fi
    demo_server="$PREFECT_API_URL"
fi
