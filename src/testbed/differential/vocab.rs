//! What the generator says: the settings it changes (with values the server accepts and
//! values it refuses), the reads that show them, and the statements the extended protocol
//! prepares. `{s}` stands for the client's own schema.

/// Why: one setting the scripts change, with how each value is written in `SET` and in
/// `set_config()`, values the server refuses, and the name it is reported under (if it is).
pub struct Setting {
    pub name: &'static str,
    pub reported: Option<&'static str>,
    /// (as written after `SET name =`, as passed to `set_config`).
    pub values: &'static [(&'static str, &'static str)],
    pub refused: &'static [&'static str],
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "search_path",
        reported: None,
        values: &[
            ("{s}", "{s}"),
            ("{s}, public", "{s}, public"),
            ("public", "public"),
            ("pg_catalog", "pg_catalog"),
            ("\"$user\", {s}", "\"$user\", {s}"),
        ],
        refused: &[],
    },
    Setting {
        name: "statement_timeout",
        reported: None,
        values: &[
            ("0", "0"),
            ("'5s'", "5s"),
            ("12345", "12345"),
            ("'1min'", "1min"),
        ],
        refused: &["'abc'", "-1"],
    },
    Setting {
        name: "application_name",
        reported: Some("application_name"),
        values: &[
            ("'app_one'", "app_one"),
            ("'app two'", "app two"),
            ("''", ""),
        ],
        refused: &[],
    },
    Setting {
        name: "DateStyle",
        reported: Some("DateStyle"),
        values: &[
            ("'ISO, MDY'", "ISO, MDY"),
            ("'SQL, DMY'", "SQL, DMY"),
            ("German", "German"),
            ("'Postgres, YMD'", "Postgres, YMD"),
        ],
        refused: &["'nonsense'"],
    },
    Setting {
        name: "IntervalStyle",
        reported: Some("IntervalStyle"),
        values: &[
            ("postgres", "postgres"),
            ("iso_8601", "iso_8601"),
            ("sql_standard", "sql_standard"),
            ("postgres_verbose", "postgres_verbose"),
        ],
        refused: &["'weird'"],
    },
    Setting {
        name: "TimeZone",
        reported: Some("TimeZone"),
        values: &[
            ("'Europe/Paris'", "Europe/Paris"),
            ("'UTC'", "UTC"),
            ("'America/New_York'", "America/New_York"),
        ],
        refused: &["'Mars/Olympus'"],
    },
    Setting {
        name: "extra_float_digits",
        reported: None,
        values: &[("0", "0"), ("1", "1"), ("2", "2"), ("3", "3"), ("-5", "-5")],
        refused: &["99"],
    },
    Setting {
        name: "work_mem",
        reported: None,
        values: &[("'4MB'", "4MB"), ("'64kB'", "64kB"), ("'1GB'", "1GB")],
        refused: &["'1kB'"],
    },
    Setting {
        name: "default_transaction_read_only",
        reported: Some("default_transaction_read_only"),
        values: &[("on", "on"), ("off", "off")],
        refused: &["maybe"],
    },
    Setting {
        name: "lock_timeout",
        reported: None,
        values: &[("'2s'", "2s"), ("0", "0")],
        refused: &["'x'"],
    },
    Setting {
        name: "client_encoding",
        reported: Some("client_encoding"),
        values: &[
            ("'UTF8'", "UTF8"),
            ("'LATIN1'", "LATIN1"),
            ("'SQL_ASCII'", "SQL_ASCII"),
        ],
        refused: &["'klingon'"],
    },
    Setting {
        name: "myapp.color",
        reported: None,
        values: &[("'red'", "red"), ("'deep blue'", "deep blue"), ("''", "")],
        refused: &[],
    },
    Setting {
        name: "myapp.level",
        reported: None,
        values: &[("42", "42"), ("'7'", "7")],
        refused: &[],
    },
];

/// Every reported parameter the scripts may change (what `RESET ALL` and `DISCARD ALL`
/// touch).
pub fn reported_names() -> Vec<&'static str> {
    SETTINGS.iter().filter_map(|s| s.reported).collect()
}

/// `SET TIME ZONE` in every form, and one zone the server refuses.
pub const TIME_ZONE_FORMS: &[&str] = &[
    "SET TIME ZONE 'Europe/Paris'",
    "SET TIME ZONE LOCAL",
    "SET TIME ZONE DEFAULT",
    "SET TIME ZONE INTERVAL '+05:00' HOUR TO MINUTE",
    "SET TIME ZONE INTERVAL '-08:00' HOUR TO MINUTE",
    "SET TIME ZONE -7",
    "SET TIME ZONE 3.5",
    "SET LOCAL TIME ZONE 'Asia/Tokyo'",
    "SET SESSION TIME ZONE 'UTC'",
    "set time zone 'America/Denver' -- note",
    "SET TIME ZONE 'Nowhere/Bad'",
];

/// Reads of what the session holds (besides `SHOW x` and `current_setting('x')`). Custom
/// settings (`myapp.*`) are read only by name, once the client has set them: whether a
/// server knows a custom name at all is not something a pool can hand on (see `generate`).
pub const READS: &[&str] = &[
    "SELECT current_user",
    "SELECT name, setting FROM pg_settings WHERE lower(name) IN ('search_path', 'statement_timeout', \
     'datestyle', 'intervalstyle', 'timezone', 'extra_float_digits', 'work_mem', 'application_name', \
     'default_transaction_read_only', 'lock_timeout', 'client_encoding') ORDER BY name",
    "SELECT count(*), coalesce(sum(id), 0) FROM t",
    "SELECT id, v FROM {s}.t ORDER BY id",
    "SELECT '2024-03-01 12:34:56+00'::timestamptz AS ts, interval '1 day 02:03:04' AS iv, \
     1.0::float8 / 3 AS third, date '2024-03-01' AS d",
    "SELECT current_schemas(false)",
];

/// Writes to the client's own table.
pub const WRITES: &[&str] = &[
    "INSERT INTO {s}.t VALUES ({n}, 'w{n}')",
    "UPDATE {s}.t SET v = v || '+' WHERE id % 2 = 0",
    "DELETE FROM {s}.t WHERE id = {n}",
];

/// Statements that fail: division by zero, an unknown table, a syntax error, a bad cast.
pub const FAILING: &[&str] = &[
    "SELECT 1/0",
    "SELECT * FROM no_such_table",
    "SELEC 1",
    "SELECT 'x'::int",
    "SET no_such_setting = 1",
];

/// Why: a statement the extended protocol prepares, with the parameter types its Parse
/// declares, the values a Bind sends, and the reported parameters it changes.
pub struct Prepared {
    pub sql: &'static str,
    pub types: &'static [u32],
    pub params: &'static [&'static str],
    pub touches: &'static [&'static str],
}

pub const PREPARED: &[Prepared] = &[
    Prepared {
        sql: "SELECT $1::int + 1",
        types: &[23],
        params: &["41"],
        touches: &[],
    },
    Prepared {
        sql: "SELECT $1 || '!'",
        types: &[0],
        params: &["hi"],
        touches: &[],
    },
    Prepared {
        sql: "SELECT count(*) FROM t",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "SELECT id, v FROM {s}.t ORDER BY id",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "SELECT current_setting('TimeZone'), current_setting('search_path')",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "SET statement_timeout = '7s'",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "SET TIME ZONE 'Asia/Tokyo'",
        types: &[],
        params: &[],
        touches: &["TimeZone"],
    },
    Prepared {
        sql: "SELECT 1/0",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "SELEC 1",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "INSERT INTO {s}.t VALUES ($1::int, 'p')",
        types: &[],
        params: &["50"],
        touches: &[],
    },
    Prepared {
        sql: "SELECT current_user",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "BEGIN",
        types: &[],
        params: &[],
        touches: &[],
    },
    Prepared {
        sql: "COMMIT",
        types: &[],
        params: &[],
        touches: &[],
    },
];

/// Startup parameters a client may send (one value each, `{s}` its schema), besides its own
/// `application_name`.
pub const STARTUP: &[(&str, &[&str])] = &[
    ("TimeZone", &["UTC", "Asia/Tokyo", "America/Denver"]),
    ("DateStyle", &["ISO, DMY", "SQL, MDY"]),
    ("search_path", &["{s}, public", "public"]),
    ("statement_timeout", &["30s"]),
    ("extra_float_digits", &["1", "2"]),
    ("IntervalStyle", &["iso_8601"]),
];
