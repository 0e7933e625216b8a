"""Python driver scenarios for tests/integration/clients.rs: `python check.py DRIVER SCENARIO PORT [USER]`.

Each prints what it observed on stdout, one fact per line, for the Rust test to assert.
TLS settings come from the environment the test sets (SSL_CERT_FILE for verification).
"""
import asyncio
import sys


def redshift_connector_connect(port, user, ssl):
    import redshift_connector

    kwargs = dict(host="localhost", port=port, database="postgres", user=user,
                  # The driver insists on a password; the proxy never asks for one.
                  password="unused")
    if ssl:
        kwargs.update(ssl=True, sslmode="verify-full")
    else:
        kwargs.update(ssl=False)
    return redshift_connector.connect(**kwargs)


def run_redshift_connector(scenario, port, user):
    conn = redshift_connector_connect(port, user, ssl=(scenario != "plain"))
    cur = conn.cursor()
    if scenario in ("whoami", "plain"):
        cur.execute("SELECT current_user, version()")
        who, version = cur.fetchone()
        print(f"user {who}")
    elif scenario == "params":
        # The driver prepares each statement once per connection (named) and binds it after.
        results = []
        for i in range(10):
            cur.execute("SELECT %s::int * 2, %s::text || '!'", (i, "v" * i))
            a, b = cur.fetchone()
            results.append(f"{a}:{b}")
        print("results " + " ".join(results))
    elif scenario == "rows":
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 5000) g ORDER BY g")
        rows = cur.fetchall()
        print(f"rows {len(rows)} {sum(r[0] for r in rows)} {rows[-1][1]}")
    conn.close()


def run_psycopg2(scenario, port, user):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, dbname="postgres", user=user)
    cur = conn.cursor()
    if scenario == "whoami":
        cur.execute("SELECT current_user")
        print(f"user {cur.fetchone()[0]}")
    elif scenario == "params":
        cur.execute("SELECT %s::int + 1, %s", (41, "it's"))
        print("result %s %s" % cur.fetchone())
    conn.close()


async def run_asyncpg(scenario, port, user):
    import asyncpg

    settings = {}
    if scenario == "float_digits":
        # What stock PostgreSQL clients ask for; Redshift accepts only -15..2.
        settings["extra_float_digits"] = "3"
    conn = await asyncpg.connect(host="127.0.0.1", port=port, database="postgres", user=user,
                                 ssl=False, server_settings=settings)
    if scenario in ("whoami", "float_digits"):
        print(f"user {await conn.fetchval('SELECT current_user')}")
        print(f"extra_float_digits {await conn.fetchval('SHOW extra_float_digits')}")
    elif scenario == "prepared":
        stmt = await conn.prepare("SELECT $1::int * 2")
        results = [await stmt.fetchval(i) for i in range(10)]
        print("results " + " ".join(str(r) for r in results))
    await conn.close()


def main():
    driver, scenario, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    user = sys.argv[4] if len(sys.argv) > 4 else "alice"
    try:
        if driver == "redshift_connector":
            run_redshift_connector(scenario, port, user)
        elif driver == "psycopg2":
            run_psycopg2(scenario, port, user)
        elif driver == "asyncpg":
            asyncio.run(run_asyncpg(scenario, port, user))
        else:
            raise SystemExit(f"unknown driver {driver}")
    except Exception as e:  # one line the test can show
        print(f"error {type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
