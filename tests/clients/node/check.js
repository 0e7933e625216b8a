// node-postgres scenarios for tests/integration/clients.rs: `node check.js SCENARIO '{"host":…,"port":…,"user":…}'`.
// Each prints what it observed on stdout, one fact per line, for the Rust test to assert.
'use strict';
const crypto = require('crypto');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');
const pg = require('pg');
const QueryStream = require('pg-query-stream');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');

const scenarios = {
  // One client, no password.
  async whoami(config) {
    const client = new pg.Client(config);
    await client.connect();
    const { rows } = await client.query('SELECT current_user AS u');
    console.log(`user ${rows[0].u}`);
    await client.end();
  },

  // pg.Pool with 10 clients checked out at once, each running a query while all are held.
  async pool(config) {
    const pool = new pg.Pool({ ...config, max: 10 });
    const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
    const results = await Promise.all(
      clients.map((c, i) => c.query('SELECT $1::int * $1::int AS sq, pg_backend_pid() AS pid', [i])),
    );
    const squares = results.map((r) => r.rows[0].sq).join(' ');
    const pids = new Set(results.map((r) => r.rows[0].pid));
    console.log(`clients ${pool.totalCount}`);
    console.log(`squares ${squares}`);
    console.log(`backends ${pids.size}`);
    clients.forEach((c) => c.release());
    await pool.end();
  },

  // 50,000 rows through pg-query-stream (a cursor: Execute with a row limit, 1,000 at a time).
  async cursor(config) {
    const client = new pg.Client(config);
    await client.connect();
    const query = new QueryStream('SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g', [50000], {
      batchSize: 1000,
    });
    let count = 0;
    let sum = 0;
    let last = null;
    await pipeline(
      client.query(query),
      new Writable({
        objectMode: true,
        write(row, _enc, done) {
          count += 1;
          sum += row.g;
          last = row;
          done();
        },
      }),
    );
    console.log(`rows ${count}`);
    console.log(`sum ${sum}`);
    console.log(`last ${last.g} ${last.h}`);
    await client.end();
  },

  // COPY FROM STDIN then COPY TO STDOUT with pg-copy-streams; prints digests of both.
  async copy(config) {
    const client = new pg.Client(config);
    await client.connect();
    const lines = [];
    for (let i = 0; i < 20000; i += 1) {
      lines.push(`${i}\trow-${i}-${'z'.repeat(i % 97)}\n`);
    }
    const sent = Buffer.from(lines.join(''));
    // Uneven chunks, so COPY data messages do not line up with rows.
    const chunks = [];
    for (let at = 0; at < sent.length; at += 7919) {
      chunks.push(sent.subarray(at, at + 7919));
    }
    const ingest = client.query(copyFrom('COPY copy_target FROM STDIN'));
    await pipeline(Readable.from(chunks), ingest);
    console.log(`copied_in ${ingest.rowCount}`);
    const received = [];
    await pipeline(
      client.query(copyTo('COPY (SELECT * FROM copy_target ORDER BY id) TO STDOUT')),
      new Writable({
        write(chunk, _enc, done) {
          received.push(chunk);
          done();
        },
      }),
    );
    const digest = (b) => crypto.createHash('sha256').update(b).digest('hex');
    console.log(`sent ${sent.length} ${digest(sent)}`);
    console.log(`received ${Buffer.concat(received).length} ${digest(Buffer.concat(received))}`);
    await client.end();
  },

  // Named queries ({name, text}): node-postgres parses a name once per connection and then only
  // binds it. Four clients take turns, 10 executions each, interleaved; each client's q1 has its
  // own text (names are per connection).
  async named(config) {
    const clients = Array.from({ length: 4 }, () => new pg.Client(config));
    await Promise.all(clients.map((c) => c.connect()));
    const results = [];
    for (let round = 0; round < 10; round += 1) {
      const answers = await Promise.all(
        clients.map((c, k) =>
          c.query({ name: 'q1', text: `SELECT $1::int * 10 + ${k} AS n`, values: [round] }),
        ),
      );
      answers.forEach((a) => results.push(a.rows[0].n));
    }
    results.sort((a, b) => a - b);
    console.log(`results ${results.length} ${results[0]} ${results[results.length - 1]} ${new Set(results).size}`);
    await Promise.all(clients.map((c) => c.end()));
  },
};

const [scenario, json] = process.argv.slice(2);
scenarios[scenario](JSON.parse(json)).catch((e) => {
  console.log(`error ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
});
