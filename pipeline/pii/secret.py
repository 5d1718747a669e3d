"""Secrets with a shape of their own: credentials whose format is published by their issuer.

| name | shape |
|---|---|
| PEM private key | `-----BEGIN ... PRIVATE KEY-----` block (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK), to its END line (a cut block: to its last full base64 line) |
| AWS access key id | `AKIA` (long-term) or `ASIA` (temporary) + 16 of A-Z2-7 |
| GitHub token | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 alphanumerics; `github_pat_` + 82 |
| GitLab token | `glpat-` + 20 of A-Za-z0-9_- |
| Slack token | `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-` + digits-and-dashes body |
| Slack webhook | `https://hooks.slack.com/services/T.../B.../...` |
| Google API key | `AIza` + 35 of A-Za-z0-9_- |
| Stripe secret key | `sk_live_` / `rk_live_` + 24 or more alphanumerics |
| JSON Web Token | three base64url parts, the first two starting `eyJ` (`{"` encoded) |

Only what an issuer fixes is matched; high-entropy strings in general are not (hashes, ids and
base64 in web text would all match).
"""

from __future__ import annotations

import re

from pipeline.pii.found import Found

PATTERNS: dict[str, re.Pattern[str]] = {
    "pem_private_key": re.compile(
        r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
        r"(?:[ \t]*\r?\n[A-Za-z-]+: [^\n]*)*"  # headers (Proc-Type, DEK-Info, Comment)
        r"(?>(?:\s*[A-Za-z0-9+/=]{40,})*)"  # full base64 lines (a cut block ends after them)
        r"(?:\s*[A-Za-z0-9+/=]{0,39}\s*-----END \1-----)?"
    ),
    "aws_access_key_id": re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
    "github_token": re.compile(
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})"
        r"(?![A-Za-z0-9_])"
    ),
    "gitlab_token": re.compile(r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20}(?![A-Za-z0-9_-])"),
    "slack_token": re.compile(r"(?<![A-Za-z0-9])xox[abprs]-(?:[0-9]+-)+[A-Za-z0-9]{16,}"),
    "slack_webhook": re.compile(
        r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}"
    ),
    "google_api_key": re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    "stripe_secret_key": re.compile(r"(?<![A-Za-z0-9])[sr]k_live_[0-9A-Za-z]{24,}"),
    "jwt": re.compile(
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"
    ),
}
# What each pattern's matches contain, led by a literal (a fast search, where a pattern led by a
# lookbehind or a class scans every character): a pattern runs only on texts its hint finds.
HINTS: dict[str, re.Pattern[str]] = {
    "pem_private_key": re.compile("PRIVATE KEY"),
    "aws_access_key_id": re.compile("A(?:KIA|SIA)"),
    "github_token": re.compile("gh(?:[pousr]_|ithub_pat_)"),
    "gitlab_token": re.compile("glpat-"),
    "slack_token": re.compile("xox[abprs]-"),
    "slack_webhook": re.compile(r"hooks\.slack\.com"),
    "google_api_key": re.compile("AIza"),
    "stripe_secret_key": re.compile("k_live_"),
    "jwt": re.compile("eyJ"),
}


def find_secrets(text: str) -> list[Found]:
    """The secrets in `text`; the value is the matched text itself."""
    out = []
    for name, pattern in PATTERNS.items():
        if HINTS[name].search(text) is None:
            continue
        for m in pattern.finditer(text):
            out.append(Found(m.start(), m.end(), "secret", m.group()))
    return out
