// pgjdbc scenarios for tests/integration/clients.rs: `java -cp <classes>:postgresql.jar ClientCheck SCENARIO URL`.
// Each prints what it observed on stdout, one fact per line, for the Rust test to assert.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import org.postgresql.PGStatement;

public class ClientCheck {
    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        String url = args[1];
        try (Connection c = DriverManager.getConnection(url)) {
            switch (scenario) {
                case "prepared_pair" -> {
                    try (Connection c2 = DriverManager.getConnection(url)) {
                        preparedPair(c, c2);
                    }
                }
                case "whoami" -> whoami(c);
                case "prepared" -> prepared(c);
                case "batch" -> batch(c);
                case "fetch" -> fetch(c);
                case "cancel" -> cancel(c);
                default -> throw new IllegalArgumentException("unknown scenario " + scenario);
            }
        }
    }

    static void whoami(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT current_user")) {
            rs.next();
            System.out.println("user " + rs.getString(1));
        }
    }

    // The same PreparedStatement 10 times: past prepareThreshold pgjdbc switches to a named
    // server-side statement and only sends Bind/Execute for it.
    static void prepared(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3, length(?::text)")) {
            StringBuilder results = new StringBuilder();
            for (int i = 1; i <= 10; i++) {
                ps.setInt(1, i);
                ps.setString(2, "x".repeat(i));
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    results.append(rs.getInt(1)).append(':').append(rs.getInt(2)).append(' ');
                }
            }
            System.out.println("results " + results.toString().trim());
            System.out.println("server_prepared " + ps.unwrap(PGStatement.class).isUseServerPrepare());
        }
    }

    // Two connections, each with its own statement past prepareThreshold: pgjdbc names both
    // S_1 (names are per connection), executed in turns.
    static void preparedPair(Connection c1, Connection c2) throws SQLException {
        try (PreparedStatement one = c1.prepareStatement("SELECT ?::int * 3, length(?::text)");
             PreparedStatement two = c2.prepareStatement("SELECT ?::text || '-two', ?::int + 1000")) {
            StringBuilder r1 = new StringBuilder();
            StringBuilder r2 = new StringBuilder();
            for (int i = 1; i <= 10; i++) {
                one.setInt(1, i);
                one.setString(2, "x".repeat(i));
                try (ResultSet rs = one.executeQuery()) {
                    rs.next();
                    r1.append(rs.getInt(1)).append(':').append(rs.getInt(2)).append(' ');
                }
                two.setString(1, "v" + i);
                two.setInt(2, i);
                try (ResultSet rs = two.executeQuery()) {
                    rs.next();
                    r2.append(rs.getString(1)).append(':').append(rs.getInt(2)).append(' ');
                }
            }
            System.out.println("results " + r1.toString().trim());
            System.out.println("results " + r2.toString().trim());
        }
    }

    // A cursor-backed ResultSet: with autocommit off and a fetch size, pgjdbc suspends the
    // portal after each 100 rows and asks for more with further Executes.
    static void fetch(Connection c) throws SQLException {
        c.setAutoCommit(false);
        long count = 0;
        long sum = 0;
        try (Statement s = c.createStatement()) {
            s.setFetchSize(100);
            try (ResultSet rs = s.executeQuery("SELECT g FROM generate_series(1, 5000) g")) {
                while (rs.next()) {
                    count++;
                    sum += rs.getLong(1);
                }
            }
        }
        c.commit();
        System.out.println("rows " + count + " " + sum);
    }

    static void batch(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO copy_target (id, payload) VALUES (?, ?)")) {
            for (int i = 1; i <= 100; i++) {
                ps.setInt(1, i);
                ps.setString(2, "row-" + i);
                ps.addBatch();
            }
            int total = 0;
            for (int n : ps.executeBatch()) {
                total += n;
            }
            System.out.println("inserted " + total);
        }
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT count(*), sum(id), count(DISTINCT payload) FROM copy_target")) {
            rs.next();
            System.out.println("table " + rs.getLong(1) + " " + rs.getLong(2) + " " + rs.getLong(3));
        }
    }

    // Runs pg_sleep(30); cancels it when a line arrives on stdin (the test sends one once the
    // query shows as active in pg_stat_activity).
    static void cancel(Connection c) throws Exception {
        Statement s = c.createStatement();
        Thread canceller = new Thread(() -> {
            try {
                new BufferedReader(new InputStreamReader(System.in)).readLine();
                s.cancel();
            } catch (Exception e) {
                System.out.println("cancel failed " + e);
            }
        });
        canceller.setDaemon(true);
        canceller.start();
        try {
            s.executeQuery("SELECT pg_sleep(30)");
            System.out.println("not cancelled");
        } catch (SQLException e) {
            System.out.println("sqlstate " + e.getSQLState());
        }
        // The connection is still usable after the cancel.
        try (ResultSet rs = s.executeQuery("SELECT 1")) {
            rs.next();
            System.out.println("after " + rs.getInt(1));
        }
    }
}
