"""A process that has imported distillab once and forks one child per ``distillab`` command the
tests run: each child is a real process (its own pid, signals, exit code, files) that starts in
milliseconds instead of re-importing torch, Lightning and transformers for every command.

Protocol, one JSON line each way: a request ``{"argv", "cwd", "env", "stdout", "stderr"}`` is
answered by ``{"pid"}`` once the child runs, then ``{"returncode"}`` when it ends (negative: the
signal that ended it, as :mod:`subprocess` reports). Nothing here computes before forking (a
thread pool started before ``fork`` would not exist in the child)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
import warnings

import distillab.cli.train as train
import distillab.run.pipeline  # noqa: F401  (the heavy imports, done once)


def child(request: dict) -> int:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the zygote's requests are not the command's input
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if os.environ.get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # As `python -m distillab.cli`: Lightning's DDP launcher starts the other ranks from these.
    sys.modules["__main__"].__spec__ = importlib.util.find_spec("distillab.cli.__main__")
    sys.argv = [train.__file__, *request["argv"]]
    try:
        train.main()
        return 0
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(child(request))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"returncode": code}), flush=True)


if __name__ == "__main__":
    serve()
