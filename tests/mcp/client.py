"""Drives `execgate mcp` with the official MCP Python SDK (a client nobody
here wrote) over stdio, and fails on any failed check.

Usage: client.py EXECGATE WORKSPACE RULES_FILE
Exits 0 when every check passed; prints each check as it goes.
"""

import asyncio
import http.server
import os
import signal
import sys
import threading
import time

import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

EXECGATE, WORKSPACE, RULES = sys.argv[1:4]
failures = []


def check(name, condition, detail=""):
    print(("ok    " if condition else "FAIL  ") + name + ("" if condition else f": {detail}"))
    if not condition:
        failures.append(name)


def pids_of(cmdline):
    """Host pids whose command line is `cmdline` (words), argv[0] compared
    by its last component (escalated programs get their canonical path)."""
    wanted = cmdline.split()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        if argv and [os.path.basename(argv[0])] + argv[1:] == [os.path.basename(wanted[0])] + wanted[1:]:
            found.append(int(entry))
    return found


async def gone(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        await asyncio.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Elicitations:
    """Answers each elicitation with the next scripted answer."""

    def __init__(self):
        self.answers = []
        self.asked = []

    async def __call__(self, context, params):
        self.asked.append(params)
        action, answer = self.answers.pop(0)
        # An exec question's form has `grant`, a network question's
        # `decision`; a dict is sent as it is.
        content = None
        if action == "accept":
            content = answer if isinstance(answer, dict) else {"grant": answer}
        return types.ElicitResult(action=action, content=content)


async def call(session, tool, **arguments):
    return await session.call_tool(tool, arguments)


def structured(result):
    return result.structured_content or {}


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


async def poll_until(session, process_id, wanted, chars=""):
    seen = ""
    for _ in range(40):
        result = await call(session, "write_stdin", process_id=process_id, chars=chars, yield_time_ms=500)
        chars = ""
        seen += structured(result).get("stdout", "")
        if wanted in seen or not structured(result).get("running", False):
            return seen, result
    return seen, result


def server_parameters():
    return StdioServerParameters(
        command=EXECGATE,
        args=["mcp", "--cwd", WORKSPACE, "--rules", RULES],
        env={
            # config.toml there: the session's profile is `limited`.
            "XDG_CONFIG_HOME": os.path.join(WORKSPACE, "..", "config"),
            "XDG_STATE_HOME": os.path.join(WORKSPACE, "..", "state"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        },
    )


async def main():
    server = server_parameters()
    elicitations = Elicitations()
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicitations) as session:
            init = await session.initialize()
            check("initialize names the server", init.server_info.name == "execgate", init)

            tools = {tool.name for tool in (await session.list_tools()).tools}
            check(
                "list_tools has the four tools",
                tools >= {"exec_command", "write_stdin", "kill_process", "list_processes"},
                tools,
            )

            result = await call(session, "exec_command", cmd="print -r -- hello; print -u2 err; exit 3")
            data = structured(result)
            check(
                "exec_command returns exit status and both streams",
                data.get("exit_code") == 3 and data.get("stdout") == "hello\n" and data.get("stderr") == "err\n"
                and not data.get("running") and "wall_time_ms" in data,
                data,
            )

            result = await call(session, "exec_command", cmd="python3 -i -q", tty=True, yield_time_ms=1000)
            data = structured(result)
            process_id = data.get("process_id")
            check("a REPL on a terminal keeps running", data.get("running") is True, data)
            seen, _ = await poll_until(session, process_id, "42", chars="print(6 * 7)\n")
            check("write_stdin types into the REPL", "42" in seen, seen)
            listed = structured(await call(session, "list_processes"))["processes"]
            check(
                "list_processes shows it running",
                any(p["process_id"] == process_id and p["running"] for p in listed),
                listed,
            )
            _, result = await poll_until(session, process_id, "\0never", chars="exit(5)\n")
            check("the REPL's exit comes back", structured(result).get("exit_code") == 5, structured(result))

            # Elicitation: accepted once, then declined.
            elicitations.answers = [("accept", "once"), ("decline", None)]
            result = await call(session, "exec_command", cmd="touch accepted && print made")
            check(
                "an accepted elicitation runs the command",
                structured(result).get("stdout") == "made\n" and os.path.exists(os.path.join(WORKSPACE, "accepted")),
                structured(result),
            )
            asked = elicitations.asked[0].message if elicitations.asked else ""
            check(
                "the elicitation names program, arguments, directory, rule and justification",
                all(part in asked for part in ["/usr/bin/touch", "'accepted'", WORKSPACE, "touching needs a person"]),
                asked,
            )
            result = await call(session, "exec_command", cmd="touch declined")
            check(
                "a declined elicitation runs nothing and is a tool error",
                result.is_error and structured(result).get("exit_code") == 126
                and "execgate: denied: /usr/bin/touch" in text_of(result)
                and not os.path.exists(os.path.join(WORKSPACE, "declined")),
                text_of(result),
            )

            # Stopped at the question: the whole command ends, and says so.
            elicitations.answers = [("accept", "stop")]
            result = await call(session, "exec_command", cmd="touch stopped; print -r -- after")
            check(
                "grant = stop ends the whole command and says it was aborted",
                structured(result).get("aborted") is True
                and "after" not in structured(result).get("stdout", "")
                and not os.path.exists(os.path.join(WORKSPACE, "stopped")),
                structured(result),
            )

            # Network: the session's profile is limited, and 127.0.0.2 is in
            # no list: the proxy asks, by elicitation.
            origin = http.server.ThreadingHTTPServer(("127.0.0.2", 0), http.server.SimpleHTTPRequestHandler)
            threading.Thread(target=origin.serve_forever, daemon=True).start()
            fetch = f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.2:{origin.server_address[1]}/"
            elicitations.asked = []
            elicitations.answers = [("accept", {"decision": "allow-once"}), ("accept", {"decision": "deny"})]
            result = await call(session, "exec_command", cmd=fetch)
            check("an allowed network question lets the connection through", structured(result).get("stdout") == "200", structured(result))
            asked = elicitations.asked[0].message if elicitations.asked else ""
            check("the network question names host, port and protocol", "127.0.0.2" in asked and "http" in asked, asked)
            result = await call(session, "exec_command", cmd=fetch)
            check("a denied one gets the proxy's refusal", structured(result).get("stdout") == "403", structured(result))
            origin.shutdown()

            result = await call(session, "exec_command", cmd="rm -f precious")
            check(
                "a forbidden program is denied with the rule's reason",
                result.is_error and "execgate: denied: /usr/bin/rm" in text_of(result)
                and "never remove" in text_of(result)
                and os.path.exists(os.path.join(WORKSPACE, "precious")),
                text_of(result),
            )

            try:
                result = await session.call_tool("write_stdin", {"process_id": "not a number"})
                malformed = result.is_error
            except MCPError:
                malformed = True
            check("a malformed call is an error", malformed)
            result = await call(session, "write_stdin", process_id=4_000_000, chars="")
            check(
                "an unknown process is a tool error that says so",
                result.is_error and "unknown process" in text_of(result),
                text_of(result),
            )
            result = await call(session, "exec_command", cmd="sleep 30", yield_time_ms=250)
            result = await call(session, "write_stdin", process_id=structured(result)["process_id"], chars="x")
            check(
                "stdin of a process on pipes is closed, and the error says how to get one",
                result.is_error and "tty = true" in text_of(result),
                text_of(result),
            )
            result = await call(session, "exec_command", cmd="print still serving")
            check("the server keeps serving after bad requests", structured(result).get("stdout") == "still serving\n")

            # Disconnect: everything of the session goes, the escalated
            # child (an allow rule) and the sandboxed one on a PTY.
            sleepers = await start_sleepers(session, "1234.5")
            servers = pids_of(f"{EXECGATE} mcp --cwd {WORKSPACE} --rules {RULES}")
            check("the server runs", len(servers) == 1, servers)

    left = await gone(sleepers + servers)
    check("client disconnect kills every process and ends the server", not left, left)

    # SIGTERM: the same.
    try:
        async with stdio_client(server_parameters()) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                sleepers = await start_sleepers(session, "1234.7")
                servers = pids_of(f"{EXECGATE} mcp --cwd {WORKSPACE} --rules {RULES}")
                check("the second server runs", len(servers) == 1, servers)
                for pid in servers:
                    os.kill(pid, signal.SIGTERM)
                left = await gone(sleepers + servers)
                check("SIGTERM kills every process and ends the server", not left, left)
                raise Finished()
    except* Finished:
        pass
    except* Exception as errors:
        # The client may notice the server's end first; the check above has run.
        print(f"note: the client ended with {errors!r}")


class Finished(Exception):
    pass


async def start_sleepers(session, seconds):
    """One escalated sleep (allowed by a rule: outside the sandbox) and one
    in the sandbox on a PTY; their host pids."""
    result = await call(session, "exec_command", cmd=f"sleep {seconds}", yield_time_ms=250)
    check(f"sleep {seconds} runs escalated", structured(result).get("running") is True, structured(result))
    await call(session, "exec_command", cmd=f"/bin/sleep {seconds}1", tty=True, yield_time_ms=250)
    sleepers = pids_of(f"sleep {seconds}") + pids_of(f"sleep {seconds}1")
    check("the long-lived processes run", len(sleepers) == 2, sleepers)
    return sleepers


asyncio.run(main())
if failures:
    print(f"{len(failures)} check(s) failed: {failures}")
    sys.exit(1)
print("all checks passed")
