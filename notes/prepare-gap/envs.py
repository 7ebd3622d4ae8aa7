import os
def job_env():
    """The environment of every measured command, on both sides (LOC=C or C.UTF-8)."""
    loc = os.environ.get("LOC", "C")
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "LANG": loc,
            "LC_COLLATE": "C", "LC_NUMERIC": "C",       # what kbuild's Makefile exports
            "PYTHONCOERCECLOCALE": "0"}                  # rmaplab (Python) must not add LC_CTYPE
