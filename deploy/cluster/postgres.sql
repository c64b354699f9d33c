-- The PostgreSQL role and database of the Prefect server (PostgreSQL 13 or newer). As the
-- postgres superuser, on the database machine:
--
--   sudo -u postgres psql -v ON_ERROR_STOP=1 -v password='<db-password>' -f deploy/cluster/postgres.sql
--
-- The password is the one in PREFECT_API_DATABASE_CONNECTION_URL (cluster.env). The server
-- creates its tables (and the trusted extension pg_trgm) itself on its first start, as the
-- owner of the database; the role needs no other privilege.
--
-- When the Prefect server runs on another machine than PostgreSQL, let it in as well:
--   postgresql.conf: listen_addresses = '<db-host>'
--   pg_hba.conf:     host  prefect  prefect  <server-address>/32  scram-sha-256

create role prefect login password :'password';
create database prefect owner prefect;
