#!/bin/sh
# Records the digest every tag of operator/images.json names now, on a machine that reaches the
# registries: `skopeo inspect --raw docker://REPOSITORY:TAG` gives the manifest (the image index
# for a multi-platform image) exactly as the registry serves it; its SHA-256 is the digest.
# The table is rewritten through jq (a serializer, never text substitution) into a temp file and
# renamed over the old one. Rebuild foreman-box afterwards: the table is compiled in.
#
#   scripts/pin-images.sh [TABLE]        default: operator/images.json
#   scripts/pin-images.sh --check [TABLE]  exit 1 when an entry has no digest (for release CI)
#
# Registry credentials, when needed, come from skopeo's usual places (REGISTRY_AUTH_FILE,
# ${XDG_RUNTIME_DIR}/containers/auth.json), never from argv. PIN_IMAGES_TLS_VERIFY=false talks
# plain HTTP to a registry (a loopback test registry); the default verifies TLS.
set -eu

say() { printf 'pin-images: %s\n' "$*" >&2; }
err() { say "error: $*"; exit 1; }

check=false
if [ "${1:-}" = "--check" ]; then
    check=true
    shift
fi
table=${1:-$(dirname "$0")/../operator/images.json}
[ -f "$table" ] || err "$table does not exist"
command -v jq >/dev/null 2>&1 || err "jq is needed (apt-get install jq)"

if $check; then
    missing=$(jq -r '.streams | to_entries[] | .key as $s | .value[] | select(.digest == null) | "\($s) \(.component) \(.repository):\(.tag)"' "$table")
    if [ -n "$missing" ]; then
        say "entries without a digest:"
        printf '%s\n' "$missing" >&2
        exit 1
    fi
    say "every entry of $table has a digest"
    exit 0
fi

command -v skopeo >/dev/null 2>&1 || err "skopeo is needed (apt-get install skopeo)"
command -v sha256sum >/dev/null 2>&1 || err "sha256sum is needed (coreutils)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$table" "$work/table.json"

jq -r '[.streams[][] | "\(.repository):\(.tag)"] | unique[]' "$table" >"$work/refs"
while IFS= read -r ref; do
    say "inspecting $ref"
    skopeo inspect --raw --tls-verify="${PIN_IMAGES_TLS_VERIFY:-true}" "docker://$ref" >"$work/manifest" \
        || err "skopeo could not read $ref (network, credentials, or the tag does not exist)"
    digest="sha256:$(sha256sum "$work/manifest" | cut -d' ' -f1)"
    repo=${ref%:*}
    tag=${ref##*:}
    jq --arg repo "$repo" --arg tag "$tag" --arg digest "$digest" \
        '.streams |= map_values(map(if .repository == $repo and .tag == $tag then .digest = $digest else . end))' \
        "$work/table.json" >"$work/next.json"
    mv "$work/next.json" "$work/table.json"
    say "$ref -> $digest"
done <"$work/refs"

# Same place, same permissions; a rename so a reader never sees half a file.
cp "$work/table.json" "$table.tmp.$$"
mv "$table.tmp.$$" "$table"
say "wrote $table; rebuild foreman-box (scripts/build.sh) so that it carries the digests"
