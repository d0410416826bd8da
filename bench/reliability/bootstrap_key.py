"""Stand-in for ``ragd keys create`` while that command has not landed: same output contract.

``python -m bench.reliability.bootstrap_key ROLE TENANT`` prints only the new key. The harness
uses it only when ``ragd keys create`` is missing, and says so in its report.
"""

from __future__ import annotations

import sys


def main() -> None:
    from sqlmodel import Session

    from ragd.config import Settings
    from ragd.db.engine import build_engine, migrate
    from ragd.db.models import Role
    from ragd.security.api_keys import create_key

    role, tenant = sys.argv[1], sys.argv[2]
    engine = build_engine(Settings())
    migrate(engine)
    with Session(engine) as s:
        issued = create_key(s, tenant=tenant, role=Role(role), name=f"reliability-{role}")
        s.commit()
    print(issued.plaintext)


if __name__ == "__main__":
    main()
