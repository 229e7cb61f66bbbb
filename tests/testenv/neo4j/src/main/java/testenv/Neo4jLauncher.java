package testenv;

import java.nio.file.Path;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.driver.AuthTokens;
import org.neo4j.driver.GraphDatabase;
import org.neo4j.io.ByteUnit;

/**
 * Embedded Neo4j for the test environment: Bolt on 127.0.0.1:PORT without TLS, auth on, user
 * neo4j with PASSWORD. Prints READY_LINE once a Bolt login with that password works; shuts
 * down cleanly on SIGTERM. Usage: Neo4jLauncher HOME_DIR PORT PASSWORD
 */
public final class Neo4jLauncher {
    public static final String READY_LINE = "testenv: neo4j ready";

    public static void main(String[] args) throws Exception {
        Path home = Path.of(args[0]).toAbsolutePath();
        int port = Integer.parseInt(args[1]);
        String password = args[2];

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                // Tests open up to ~1000 Bolt connections at once: one worker thread each, and room
                // for as many open transactions (default caps: 400 threads, 1000 transactions, and
                // 70% of the heap of transaction memory, granted in 2 MiB chunks: ~350 transactions).
                .setConfig(BoltConnector.thread_pool_max_size, 2000)
                .setConfig(GraphDatabaseSettings.max_concurrent_transactions, 10_000)
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, 0L)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                // No lock-out after failed logins: wrong-password tests must not lock the shared user.
                .setConfig(GraphDatabaseSettings.auth_max_failed_attempts, 0)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(64))
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "neo4j-shutdown"));

        // A fresh store has neo4j/neo4j with a forced change; set ours once, keep it on restarts.
        var system = dbms.database("system");
        boolean fresh = system.executeTransactionally(
                "SHOW USERS YIELD user, passwordChangeRequired WHERE user = 'neo4j' "
                        + "RETURN passwordChangeRequired",
                Map.of(), r -> r.hasNext() && (Boolean) r.next().get("passwordChangeRequired"));
        if (fresh) {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        }

        // Ready means a real Bolt login works (the driver ships with Neo4j itself).
        try (var driver = GraphDatabase.driver("bolt://127.0.0.1:" + port, AuthTokens.basic("neo4j", password))) {
            driver.verifyConnectivity();
        }
        System.out.println(READY_LINE + " on bolt://127.0.0.1:" + port + (fresh ? " (password set)" : ""));
        Thread.currentThread().join(); // run until SIGTERM; the hook shuts the store down
    }
}
