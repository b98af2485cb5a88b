#!/usr/bin/env python3
"""Facts about the workspace that CI's publishing checks need, from `cargo metadata`.

    workspace.py published       names of the crates that will be published
                                 (every member without `publish = false`)
    workspace.py target-dir      cargo's target directory
    workspace.py licence-files   checks each published crate's package holds
                                 README and the files its licence names
    workspace.py msrv            checks every crate's rust-version against
                                 its dependencies' and its own code

The list of published crates is never written down: a new member (say
`ipc2_macros`) is checked as soon as it joins the workspace, unless its
Cargo.toml says `publish = false`.
"""

import json
import pathlib
import re
import subprocess
import sys

# Let chains (`if let A = b && let C = d`) are stable since this release.
LET_CHAINS = (1, 88)
# Files a package must contain for each SPDX id its licence expression names.
LICENCE_FILES = {"MIT": "LICENSE-MIT", "Apache-2.0": "LICENSE-APACHE"}


def metadata():
    return json.loads(run(["cargo", "metadata", "--format-version", "1"]))


def run(command):
    """`command`'s output; on failure, its own message and exit."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(f"error: `{' '.join(command)}` failed (its message is above)")
    return done.stdout


def members(meta):
    ids = set(meta["workspace_members"])
    return [p for p in meta["packages"] if p["id"] in ids]


def published(meta):
    # `publish = false` shows as an empty list of allowed registries.
    return [p for p in members(meta) if p.get("publish") != []]


def version(text):
    return tuple(int(part) for part in text.split("."))[:3]


def shown(parts):
    return ".".join(str(part) for part in parts)


def cmd_published(meta):
    for package in published(meta):
        print(package["name"])


def cmd_target_dir(meta):
    print(meta["target_directory"])


def cmd_licence_files(meta):
    failures = []
    for package in published(meta):
        name = package["name"]
        listed = run(["cargo", "package", "--list", "--allow-dirty", "-p", name]).split()
        wanted = [package.get("readme") and pathlib.Path(package["readme"]).name]
        spdx_ids = re.findall(r"[A-Za-z0-9.\-]+", package.get("license") or "")
        for spdx in spdx_ids:
            if spdx in ("OR", "AND", "WITH"):
                continue
            if spdx not in LICENCE_FILES:
                failures.append(
                    f"{name}: licence {spdx} has no known file: add its text to the "
                    f"repository root and to LICENCE_FILES in .ci/workspace.py"
                )
                continue
            wanted.append(LICENCE_FILES[spdx])
        if not package.get("readme"):
            failures.append(f'{name}: no readme: add `readme = "README.md"` to its Cargo.toml')
        for file in filter(None, wanted):
            if file not in listed:
                failures.append(
                    f"{name}: the package lacks {file}: link it into the crate's "
                    f"directory (`ln -s ../{file} {name}/{file}`) or, for a readme, "
                    f"write one"
                )
        for key in ("description", "keywords", "categories"):
            if not package.get(key):
                failures.append(f"{name}: `{key}` is missing from its Cargo.toml")
        print(f"{name}: {' '.join(sorted(set(filter(None, wanted))))} packaged")
    return failures


def dependency_closure(meta, root_id):
    """Every package `root_id` needs to build, test and document itself: its
    own dependencies of every kind (dev included), then theirs."""
    nodes = {node["id"]: node for node in meta["resolve"]["nodes"]}
    seen = set()
    stack = [dep["pkg"] for dep in nodes[root_id]["deps"]]
    while stack:
        package_id = stack.pop()
        if package_id in seen:
            continue
        seen.add(package_id)
        # Cargo resolves no dev-dependencies of dependencies.
        stack.extend(dep["pkg"] for dep in nodes[package_id]["deps"])
    return seen


def let_chains(paths):
    """(file, line) of each `if`/`while` condition that chains a `let` with
    `&&`. A rough scan (comments and strings are stripped first), enough to
    catch the one post-1.85 construct this code base is likely to use."""
    found = []
    strip = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', re.S)
    keyword = re.compile(r"\b(?:if|while)\b")
    for path in paths:
        text = strip.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), path.read_text())
        for match in keyword.finditer(text):
            # Braces open the body, except in a `let` pattern (`let S { .. } =`).
            depth, end, in_pattern = 0, match.end(), False
            while end < len(text):
                char = text[end]
                if re.match(r"\blet\b", text[end:end + 4]) and not text[end - 1].isalnum():
                    in_pattern = True
                elif in_pattern and char == "=" and text[end + 1] not in "=>":
                    in_pattern = False
                if char in "([" or (in_pattern and char == "{"):
                    depth += 1
                elif char in ")]" or (in_pattern and char == "}"):
                    depth -= 1
                elif depth <= 0 and (char in "{};" or text.startswith("=>", end)):
                    break
                end += 1
            condition = text[match.end():end]
            if re.search(r"\blet\b", condition) and "&&" in condition:
                found.append((path, text.count("\n", 0, match.start()) + 1))
    return found


def cmd_msrv(meta):
    packages = {p["id"]: p for p in meta["packages"]}
    member_ids = set(meta["workspace_members"])
    failures = []
    for member in members(meta):
        name, declared = member["name"], member.get("rust_version")
        if declared is None:
            failures.append(
                f"{name}: no rust-version: declare the oldest Rust that builds it "
                f"(`rust-version = \"1.xx\"` in {name}'s Cargo.toml)"
            )
            continue
        ours = version(declared)
        needed = []
        for package_id in dependency_closure(meta, member["id"]):
            dep = packages[package_id]
            theirs = dep.get("rust_version")
            if theirs and version(theirs) > ours:
                needed.append((version(theirs), dep["name"], dep["version"]))
        member_names = {packages[i]["name"] for i in member_ids}
        for theirs, dep_name, dep_version in sorted(needed, reverse=True):
            if dep_name in member_names:
                what, other = "workspace crate", f"lower {dep_name}'s if it is not true"
            else:
                what = "dependency"
                other = f"require a release of {dep_name} that supports {declared}"
            failures.append(
                f"{name} declares rust-version {declared}, but its {what} "
                f"{dep_name} {dep_version} needs {shown(theirs)}: raise {name}'s "
                f"rust-version to {shown(theirs)} (say why in a comment), or {other}"
            )
        if ours < LET_CHAINS:
            sources = sorted(
                {
                    path
                    for target in member["targets"]
                    for path in pathlib.Path(target["src_path"]).parent.rglob("*.rs")
                }
            )
            for path, line in let_chains(sources):
                failures.append(
                    f"{path}:{line}: a let chain needs Rust {shown(LET_CHAINS)}, but "
                    f"{name} declares {declared}: nest the `if let`s, or raise "
                    f"{name}'s rust-version to {shown(LET_CHAINS)}"
                )
        print(f"{name}: rust-version {declared}")
    return failures


def main():
    commands = {
        "published": cmd_published,
        "target-dir": cmd_target_dir,
        "licence-files": cmd_licence_files,
        "msrv": cmd_msrv,
    }
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(commands)}}}")
    failures = commands[sys.argv[1]](metadata())
    for failure in failures or []:
        print(f"error: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
