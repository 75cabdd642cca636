#!/usr/bin/env python3
"""Turn capture_server.py JSON-lines captures into one fixture file per request.

Usage: python3 make_fixtures.py CAPTURE_DIR FIXTURE_DIR

Each fixture is {"method", "path", "headers": [[name, value], ...], "body"}
with headers in the exact order and case received and body the raw request
body string exactly as received.  API keys were already placeholders
(sk-ant-test-capture / sk-test-capture); the script refuses to write a
fixture that seems to carry any other key.
"""
import json
import os
import re
import sys

# fixture name -> (capture file stem, request seq number in that file)
MAP = {
    # Claude Code 2.1.197, `claude -p "say ok"` (ANTHROPIC_API_KEY)
    "claude_code_head_probe": ("cc_default", 1),
    "claude_code_messages": ("cc_default", 2),
    # same with --model claude-sonnet-4-6 / --model haiku
    "claude_code_messages_model_sonnet": ("cc_model", 2),
    "claude_code_messages_model_haiku": ("cc_haiku", 2),
    # ANTHROPIC_AUTH_TOKEN instead of ANTHROPIC_API_KEY
    "claude_code_bearer": ("cc_bearer", 2),
    # interactive TUI under tmux: first turn, title generation, second turn
    "claude_code_interactive_messages": ("cc_interactive", 2),
    "claude_code_interactive_title": ("cc_interactive", 3),
    "claude_code_interactive_second_turn": ("cc_interactive", 4),
    # @anthropic-ai/sdk 1.14.0
    "anthropic_sdk_messages": ("sdk", 1),
    "anthropic_sdk_messages_stream": ("sdk", 2),
    "anthropic_sdk_messages_stream_helper": ("sdk", 3),
    "anthropic_sdk_bearer": ("sdk", 4),
    "anthropic_sdk_bearer_stream": ("sdk", 5),
    "anthropic_sdk_count_tokens": ("sdk", 6),
    "anthropic_sdk_models_list": ("sdk", 7),
    # openai 6.49.0
    "openai_sdk_responses": ("sdk", 8),
    "openai_sdk_responses_stream": ("sdk", 9),
    "openai_sdk_responses_stream_helper": ("sdk", 10),
    # Codex CLI 0.171.0, custom provider (wire_api = "responses")
    "codex_cli_responses": ("codex_try1", 1),
    "codex_cli_responses_model_gpt5codex": ("codex_model", 1),
    "codex_cli_responses_resume": ("codex_resume", 2),
    "codex_tui_responses": ("codex_tui", 1),
    "codex_tui_title": ("codex_tui", 2),
    # Codex CLI, built-in "openai" provider with openai_base_url
    "codex_cli_builtin_websocket_upgrade": ("codex_builtin2", 1),
    "codex_cli_builtin_responses": ("codex_builtin2", 8),
}

KEY_RE = re.compile(r"sk-(?:ant-(?:api\d\d-)?|proj-|svcacct-)[A-Za-z0-9_-]{8,}")
ALLOWED = {"sk-ant-test-capture", "sk-test-capture"}


def main():
    cap_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    cache = {}
    for name, (stem, seq) in sorted(MAP.items()):
        if stem not in cache:
            with open(os.path.join(cap_dir, stem + ".jsonl"), encoding="utf-8") as f:
                cache[stem] = {e["seq"]: e for e in map(json.loads, f)}
        e = cache[stem][seq]
        if e.get("body") is None:
            raise SystemExit("%s: body is not UTF-8 text" % name)
        fx = {"method": e["method"], "path": e["path"],
              "headers": e["headers"], "body": e["body"]}
        blob = json.dumps(fx)
        bad = set(KEY_RE.findall(blob)) - ALLOWED
        for hn, hv in e["headers"]:
            if hn.lower() in ("authorization", "x-api-key"):
                if hv.split(" ")[-1] not in ALLOWED:
                    bad.add(hv)
        if bad:
            raise SystemExit("%s: unexpected key-like strings %r" % (name, bad))
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(fx, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print("%-42s %-5s %-28s %7d body bytes" % (
            name + ".json", e["method"], e["path"], len(e["body"].encode())))


if __name__ == "__main__":
    main()
