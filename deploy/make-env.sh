#!/usr/bin/env bash
# Write the compose stack's .env with generated secrets, or add the ones an older .env lacks.
#
#   deploy/make-env.sh [ENV_FILE]      (default: .env at the repository's root)
#
# A new file is deploy/compose.env.example with DJANGO_SECRET_KEY, JWT_SECRET,
# POSTGRES_PASSWORD, REDIS_PASSWORD and DOCKER_GID filled in. An existing file is never
# rewritten: each of those that is missing or empty there is appended, so running it after an
# upgrade that introduced a new secret (REDIS_PASSWORD) is enough, and a second run changes
# nothing. The file is mode 600. Secrets are URL-safe: they go into DATABASE_URL and REDIS_URL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="${1:-$ROOT/.env}"

secret() { python3 -c "import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))" "$1"; }
docker_gid() { stat -c %g /var/run/docker.sock 2>/dev/null || true; }

value_of() {
    # The value of KEY in ENV_FILE (the last assignment wins, as in compose), empty when unset.
    sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
}

generate() {
    case "$1" in
        DJANGO_SECRET_KEY) secret 50 ;;
        JWT_SECRET) python3 -c "import secrets; print(secrets.token_hex(32))" ;;
        POSTGRES_PASSWORD) secret 24 ;;
        REDIS_PASSWORD) secret 32 ;;
        DOCKER_GID) docker_gid ;;
    esac
}

umask 077
if [ ! -e "$ENV_FILE" ]; then
    cp "$ROOT/deploy/compose.env.example" "$ENV_FILE"
    created=1
else
    created=""
fi
chmod 600 "$ENV_FILE"

added=()
for key in DJANGO_SECRET_KEY JWT_SECRET POSTGRES_PASSWORD REDIS_PASSWORD DOCKER_GID; do
    [ -n "$(value_of "$key")" ] && continue
    value="$(generate "$key")"
    if [ -z "$value" ]; then
        echo "make-env.sh: could not work out $key (no /var/run/docker.sock?); set it in $ENV_FILE" >&2
        continue
    fi
    if grep -q "^$key=$" "$ENV_FILE"; then
        # The example's empty line: fill it in place, keeping its comment above it.
        sed -i "s|^$key=\$|$key=$value|" "$ENV_FILE"
    else
        printf '%s=%s\n' "$key" "$value" >>"$ENV_FILE"
    fi
    added+=("$key")
done

if [ -n "$created" ]; then
    echo "make-env.sh: wrote $ENV_FILE with generated ${added[*]}"
elif [ "${#added[@]}" -gt 0 ]; then
    echo "make-env.sh: added ${added[*]} to $ENV_FILE"
else
    echo "make-env.sh: $ENV_FILE has every secret already; nothing changed"
fi
