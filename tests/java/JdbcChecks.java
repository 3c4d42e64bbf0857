// pgjdbc (Debian's libpostgresql-jdbc-java) against `tessera serve`: what
// DBeaver, Metabase and other JDBC tools do on connecting: DatabaseMetaData
// (schemas, tables, columns, functions, types), prepared statements with
// parameters of several types, and reading each column type.
//
// Run by the Rust test `wire::jdbc` (`java -cp postgresql.jar JdbcChecks.java
// PORT PASSWORD`); prints "ok", or the failing check and exits 1.

import java.sql.*;
import java.util.*;

public class JdbcChecks {
    static void check(boolean cond, String what) {
        if (!cond) {
            System.err.println("FAILED: " + what);
            System.exit(1);
        }
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(name));
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tessera";
        Properties props = new Properties();
        props.setProperty("user", "tessera");
        props.setProperty("password", args[1]);
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
            check(md.getDatabaseMajorVersion() >= 16, "version " + md.getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE customers (id BIGINT NOT NULL, email TEXT, score DOUBLE, "
                        + "vip BOOLEAN, signed_up TIMESTAMP, born DATE)");
                s.execute("INSERT INTO customers VALUES "
                        + "(1, 'marie@example.com', 4.5, true, '2024-03-01 10:00:00', '1990-05-17'), "
                        + "(2, 'paul@example.com', NULL, false, NULL, NULL)");
                s.execute("CREATE VIEW vips AS SELECT id, email FROM customers WHERE vip");
            }
            List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
            check(schemas.contains("public"), "schemas " + schemas);
            List<String> tables = column(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME");
            check(tables.contains("customers"), "tables " + tables);
            List<String> views = column(md.getTables(null, "public", "%", new String[] {"VIEW"}), "TABLE_NAME");
            check(views.contains("vips"), "views " + views);
            Map<String, String> types = new HashMap<>();
            Map<String, Integer> nullable = new HashMap<>();
            try (ResultSet rs = md.getColumns(null, "public", "customers", "%")) {
                while (rs.next()) {
                    types.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
                    nullable.put(rs.getString("COLUMN_NAME"), rs.getInt("NULLABLE"));
                }
            }
            check("int8".equals(types.get("id")), "id type " + types);
            check("text".equals(types.get("email")), "email type " + types);
            check("float8".equals(types.get("score")), "score type " + types);
            check("bool".equals(types.get("vip")), "vip type " + types);
            check(nullable.get("id") == DatabaseMetaData.columnNoNulls, "id not null " + nullable);
            check(nullable.get("email") == DatabaseMetaData.columnNullable, "email nullable " + nullable);
            List<String> functions = column(md.getFunctions(null, "public", "%"), "FUNCTION_NAME");
            check(functions.contains("unify") && functions.contains("in_segment"), "functions " + functions);
            List<String> typeInfo = column(md.getTypeInfo(), "TYPE_NAME");
            check(typeInfo.contains("int8") && typeInfo.contains("text"), "type info " + typeInfo.size());
            // Keys and indexes as PostgreSQL defines them: Tessera has none
            // (its bitmap indexes are not B-trees a client could use); the
            // queries run and answer empty.
            check(column(md.getPrimaryKeys(null, "public", "customers"), "COLUMN_NAME").isEmpty(), "no primary key");
            check(column(md.getIndexInfo(null, "public", "customers", false, true), "INDEX_NAME").isEmpty(), "no index");
            check(column(md.getImportedKeys(null, "public", "customers"), "PKCOLUMN_NAME").isEmpty(), "no foreign key");
            check(column(md.getExportedKeys(null, "public", "customers"), "FKCOLUMN_NAME").isEmpty(), "no foreign key");
            // Functions, not procedures (prokind 'p'): pgjdbc lists none.
            List<String> procedures = column(md.getProcedures(null, "public", "%"), "PROCEDURE_NAME");
            check(procedures.isEmpty(), "procedures " + procedures);
            List<String> unifyColumns = column(md.getFunctionColumns(null, "public", "unify", "%"), "COLUMN_NAME");
            check(unifyColumns.contains("kind") && unifyColumns.contains("value"), "unify's columns " + unifyColumns);

            try (PreparedStatement p = c.prepareStatement(
                    "SELECT id, email, score, vip, signed_up, born FROM customers WHERE id = ? AND email LIKE ?")) {
                p.setLong(1, 1);
                p.setString(2, "marie%");
                try (ResultSet rs = p.executeQuery()) {
                    check(rs.next(), "a row by parameters");
                    check(rs.getLong(1) == 1, "id");
                    check(rs.getString(2).equals("marie@example.com"), "email");
                    check(rs.getDouble(3) == 4.5, "score");
                    check(rs.getBoolean(4), "vip");
                    check(rs.getTimestamp(5).toString().equals("2024-03-01 10:00:00.0"), "signed_up " + rs.getTimestamp(5));
                    check(rs.getDate(6).toString().equals("1990-05-17"), "born " + rs.getDate(6));
                    ResultSetMetaData rsmd = rs.getMetaData();
                    check(rsmd.getColumnType(1) == Types.BIGINT, "column type BIGINT");
                    check(rsmd.getColumnType(4) == Types.BIT || rsmd.getColumnType(4) == Types.BOOLEAN, "column type bool");
                    check(!rs.next(), "one row");
                }
            }
            // The same prepared statement many times (pgjdbc switches to a
            // server-side statement after prepareThreshold uses).
            try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM customers WHERE id <= ?")) {
                for (int i = 1; i <= 8; i++) {
                    p.setInt(1, i);
                    try (ResultSet rs = p.executeQuery()) {
                        rs.next();
                        check(rs.getLong(1) == Math.min(i, 2), "count " + i);
                    }
                }
            }
            // An error has its SQLSTATE and the connection goes on.
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM no_such_table");
                check(false, "an unknown table is an error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState());
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM vips")) {
                rs.next();
                check(rs.getLong(1) == 1, "view count");
            }
        }
        System.out.println("ok");
    }
}
