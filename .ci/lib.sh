# Shared by the .ci scripts: `source .ci/lib.sh` from the repository root.

# Prints what failed and what to do about it, then stops the run.
fail() {
    echo >&2
    echo "error: $1" >&2
    echo "what to do: $2" >&2
    exit 1
}

# The crates that will be published: every workspace member without
# `publish = false` (ipc2, ipc2_common, ipc2_host, ipc2_worker, and any
# crate added later, such as ipc2_macros).
published_crates() {
    python3 .ci/workspace.py published
}
