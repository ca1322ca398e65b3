# The Python zygote (sandboxd/src/zygote.rs): an interpreter started ahead of time that imports
# the heavy libraries, says it is ready, then waits for ONE run. It becomes that run: it takes the
# run's stdin/stdout/stderr (passed as file descriptors), terminal, working directory and
# environment, then executes the run's file as `__main__` exactly as `python3 -u FILE` would.
# It is used once: every run gets an interpreter of its own (hash seed, random states, memory).
#
# argv: -c agent-runtime-zygote PRELOAD (comma-separated module names) SCRIPT_DIR (where run files
# are written: sys.path[0] of the run, as for `python3 FILE`). fd 3: the control socket.


def _agent_runtime_zygote():
    import os
    import sys

    control_fd = 3
    # What the interpreter's launcher (a wrapper such as pyenv's shim) made of the environment
    # sandboxd started it with: the run's environment gets the same changes.
    started_with = dict(os.environ)
    preload = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else []
    # `-c` put the working directory first; the run's file's directory belongs there.
    if len(sys.argv) > 3:
        sys.path[0] = sys.argv[3]
    for name in preload:
        try:
            __import__(name)
        except BaseException:
            # Not installed here, or broken: the run imports it itself, as a fresh interpreter.
            pass

    import atexit
    import builtins
    import json
    import signal
    import socket
    import struct
    import types

    control = socket.socket(fileno=control_fd)
    control.sendall(b"R")
    try:
        first, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
    except OSError:
        os._exit(0)
    if len(first) < 4 or len(fds) != 3:
        # sandboxd went away, or retired this zygote.
        os._exit(0)
    (length,) = struct.unpack(">I", first[:4])
    data = bytearray(first[4:])
    while len(data) < length:
        more = control.recv(length - len(data))
        if not more:
            os._exit(0)
        data += more
    control.close()
    job = json.loads(bytes(data))
    _agent_runtime_notice.append(job.get("exit_notice"))

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    if job.get("pty"):
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    env = dict(job["env"])
    spawned = job.get("spawned_env", {})
    for key in set(spawned) | set(started_with):
        if spawned.get(key) != started_with.get(key):
            if key in started_with:
                env[key] = started_with[key]
            else:
                env.pop(key, None)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(job["cwd"])

    script = job["script"]
    sys.argv = [script]
    sys.orig_argv = [sys.orig_argv[0] if sys.orig_argv else "python3", "-u", script]
    sys.path[0] = os.path.dirname(os.path.realpath(script))

    # An uncaught KeyboardInterrupt ends a fresh interpreter with SIGINT after finalisation:
    # registered before any of the run's handlers, this one runs after all of them.
    interrupted = []

    def _exit_by_sigint():
        if interrupted:
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)

    atexit.register(_exit_by_sigint)

    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__cached__ = None
    main.__loader__ = SourceFileLoader("__main__", script)
    main.__builtins__ = builtins
    main.__annotations__ = {}
    sys.modules["__main__"] = main
    try:
        with open(script, "rb") as f:
            source = f.read()
        code = compile(source, script, "exec", dont_inherit=True)
        del source
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        # As the interpreter reports an uncaught exception: through sys.excepthook, without this
        # function's frame.
        tb = e.__traceback__.tb_next if e.__traceback__ else None
        e.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
        sys.excepthook(type(e), e, tb)
        if isinstance(e, KeyboardInterrupt):
            interrupted.append(True)
        raise SystemExit(1) from None



# Where to say the exit status before leaving (sandboxd/src/exit_notice.rs), from the job.
_agent_runtime_notice = []


def _agent_runtime_exit(code):
    # The interpreter's own exit, less the teardown: wait for non-daemon threads, run the atexit
    # handlers (the run's, then ours), flush stdio, and leave. Tearing down the preloaded
    # libraries (pandas, matplotlib) cost a plain `print(1)` about 90 ms, and nothing a program
    # can rely on happens in it.
    import atexit
    import os
    import socket
    import sys
    import threading

    try:
        threading._shutdown()
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    name = _agent_runtime_notice[0] if _agent_runtime_notice else None
    if name:
        # The kernel takes milliseconds to tear down an interpreter with numpy and pandas
        # loaded, and only then would the pipes close and sandboxd hear of the exit: close
        # them now and say the status first.
        try:
            os.closerange(0, 3)
            notice = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            notice.connect("\0" + name)
            notice.sendall(str(code).encode())
            notice.close()
        except BaseException:
            pass
    os._exit(code)


try:
    _agent_runtime_zygote()
except SystemExit as _agent_runtime_stop:
    # As the interpreter handles SystemExit: None is 0, an int is the status, anything else is
    # printed to stderr and the status is 1.
    _code = _agent_runtime_stop.code
    if _code is None:
        _code = 0
    elif not isinstance(_code, int):
        import sys as _sys

        try:
            print(_code, file=_sys.stderr)
        except BaseException:
            pass
        _code = 1
    _agent_runtime_exit(_code & 0xFF)
else:
    _agent_runtime_exit(0)
