-- Sample warehouse for the redshift-iam-proxy demo: used by `redshift-iam-proxy demo`
-- and by docker-compose.yml (mounted as an init script), so both show the same thing.
-- Database users alice and bob exist; the groups decide what each may read.
CREATE ROLE alice;
CREATE ROLE bob;
CREATE ROLE analysts;
CREATE ROLE engineers;

CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, customer text, amount numeric(10, 2), ordered_at date);
INSERT INTO sales.orders VALUES
    (1, 'Acme Corp', 1250.00, '2026-01-15'),
    (2, 'Globex', 310.50, '2026-02-03'),
    (3, 'Initech', 87.25, '2026-02-11'),
    (4, 'Umbrella', 4999.99, '2026-03-01');

CREATE SCHEMA ops;
CREATE TABLE ops.deployments (id int PRIMARY KEY, service text, version text, deployed_at timestamptz);
INSERT INTO ops.deployments VALUES
    (1, 'api', '1.4.2', '2026-03-02 10:00+00'),
    (2, 'etl', '0.9.0', '2026-03-03 08:30+00');

GRANT USAGE ON SCHEMA sales TO analysts;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO analysts;
GRANT USAGE ON SCHEMA ops TO engineers;
GRANT SELECT ON ALL TABLES IN SCHEMA ops TO engineers;
