"""Assertions of the Windows smoke run (.ci/platforms) on demo-app's JSON output.

    check.py list FILE PLUGIN...   every PLUGIN active, dependency.dll "not a plugin",
                                   nothing failed, nothing else listed
    check.py call FILE KEY JSON    the reply is a JSON object whose KEY is the value JSON

Prints what is wrong and exits 1 if an assertion fails.
"""
import json
import sys


def fail(message, text):
    print(f"  {message}\n  output: {text.strip()}")
    sys.exit(1)


def row_name(row):
    """A row's plugin name; for a file that is no plugin (`"plugin": null`), its file name."""
    if row["plugin"] is not None:
        return row["plugin"]
    return row["file"].replace("\\", "/").rsplit("/", 1)[-1]


def check_list(text, plugins):
    rows = json.loads(text)
    by_name = {row_name(row): row for row in rows}
    for plugin in plugins:
        row = by_name.get(plugin)
        if row is None:
            fail(f"plugin {plugin} is not listed", text)
        if row["state"] != "active":
            fail(f"plugin {plugin} is {row['state']}: {row['error']}", text)
    dependency = by_name.get("dependency.dll")
    if dependency is None:
        fail("the dependency DLL is not listed", text)
    if dependency["state"] != "not a plugin" or "no root module" not in (dependency["error"] or ""):
        fail(f"the dependency DLL is {dependency['state']}: {dependency['error']}", text)
    failed = [row_name(row) for row in rows if row["state"] == "failed"]
    if failed:
        fail(f"failed: {', '.join(failed)}", text)
    extra = set(by_name) - set(plugins) - {"dependency.dll"}
    if extra:
        fail(f"unexpected rows: {', '.join(sorted(extra))}", text)


def main():
    mode, path, *rest = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if mode == "list":
            check_list(text, rest)
        elif mode == "call":
            key, value = rest
            reply = json.loads(text)
            if not isinstance(reply, dict) or reply.get(key) != json.loads(value):
                fail(f"expected {key} = {value}", text)
        else:
            sys.exit(f"unknown mode {mode}")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        fail(f"not the expected JSON ({e})", text)


main()
