/* schema.c — the database schema, as numbered migrations.
 *
 * Each migration is applied once, in its own transaction, and recorded in
 * schema_migrations. Migrations are append-only: a released one never
 * changes; a change to the schema is a new migration (and a note in the
 * README). Several daemons may start together against one database: the
 * store takes an advisory lock before it reads the version.
 */
#include "schema.h"

#include <stddef.h>

static const struct schema_migration migrations[] = {
	{ 1, "events, quarantine, forward_outbox, ingest_checkpoint",
	  /* Records, one row per event id. Partitioned by day on the device's
	   * event time; the DEFAULT partition catches times outside every
	   * daily partition (a device clock years off) so no insert fails. */
	  "CREATE TABLE events ("
	  "  id uuid NOT NULL,"
	  "  event_time timestamptz NOT NULL,"
	  "  received_at timestamptz NOT NULL,"
	  "  community_id text NOT NULL,"
	  "  device_id text NOT NULL,"
	  "  device_class text NOT NULL,"
	  "  event_type text NOT NULL,"
	  "  severity text NOT NULL,"
	  "  vendor text NOT NULL,"
	  "  route text NOT NULL,"
	  "  source_topic text NOT NULL,"
	  "  journal_node text NOT NULL,"
	  "  journal_seq bigint NOT NULL,"
	  "  clock_skewed boolean NOT NULL DEFAULT false,"
	  "  plate text,"
	  "  record bytea NOT NULL,"
	  "  attrs jsonb,"
	  "  PRIMARY KEY (id, event_time)"
	  ") PARTITION BY RANGE (event_time);"
	  "CREATE TABLE events_default PARTITION OF events DEFAULT;"
	  "CREATE INDEX events_device_time ON events (device_id, event_time);"
	  "CREATE INDEX events_plate ON events (plate, event_time) WHERE plate IS NOT NULL;"
	  "CREATE INDEX events_community_time ON events (community_id, event_time);"

	  /* Messages no decoder took: raw bytes and the reason, never dropped. */
	  "CREATE TABLE quarantine ("
	  "  journal_node text NOT NULL,"
	  "  journal_seq bigint NOT NULL,"
	  "  received_at timestamptz NOT NULL,"
	  "  topic text NOT NULL,"
	  "  raw bytea NOT NULL,"
	  "  reason text NOT NULL,"
	  "  route text,"
	  "  PRIMARY KEY (journal_node, journal_seq)"
	  ");"
	  "CREATE INDEX quarantine_received ON quarantine (received_at);"

	  /* What goes to the police platform, and what became of it. */
	  "CREATE TABLE forward_outbox ("
	  "  event_id uuid NOT NULL,"
	  "  event_time timestamptz NOT NULL,"
	  "  target text NOT NULL,"
	  "  priority smallint NOT NULL DEFAULT 0,"
	  "  state text NOT NULL DEFAULT 'pending'"
	  "    CHECK (state IN ('pending', 'sent', 'failed')),"
	  "  attempts integer NOT NULL DEFAULT 0,"
	  "  last_status integer,"
	  "  last_error text,"
	  "  next_attempt_at timestamptz NOT NULL DEFAULT now(),"
	  "  created_at timestamptz NOT NULL DEFAULT now(),"
	  "  sent_at timestamptz,"
	  "  PRIMARY KEY (event_id, target)"
	  ");"
	  "CREATE INDEX forward_outbox_pending ON forward_outbox"
	  "  (target, priority DESC, created_at) WHERE state = 'pending';"

	  /* How far each daemon's journal is safely in the database. */
	  "CREATE TABLE ingest_checkpoint ("
	  "  journal_node text PRIMARY KEY,"
	  "  journal_seq bigint NOT NULL,"
	  "  updated_at timestamptz NOT NULL DEFAULT now()"
	  ");"

	  /* Daily partitions ahead of time, and retention: whole partitions
	   * older than the retention are dropped (0 keeps everything), and so
	   * are old rows of the DEFAULT partition and of quarantine. Rows that
	   * landed in the DEFAULT partition for a day that now gets its own are
	   * moved into it. Returns the names of the dropped partitions. */
	  "CREATE FUNCTION gridbridge_maintain_partitions(ahead integer, retention_days integer)"
	  " RETURNS SETOF text LANGUAGE plpgsql AS $fn$"
	  "DECLARE d date; part text; r record;"
	  "BEGIN"
	  "  FOR d IN SELECT generate_series(current_date - 1, current_date + ahead, '1 day')::date LOOP"
	  "    part := 'events_p' || to_char(d, 'YYYYMMDD');"
	  "    IF to_regclass(part) IS NULL THEN"
	  "      CREATE TEMP TABLE IF NOT EXISTS gridbridge_move (LIKE events) ON COMMIT DROP;"
	  "      DELETE FROM gridbridge_move;"
	  "      WITH moved AS (DELETE FROM events_default"
	  "          WHERE event_time >= d AND event_time < d + 1 RETURNING *)"
	  "        INSERT INTO gridbridge_move SELECT * FROM moved;"
	  "      EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',"
	  "        part, d::timestamptz, (d + 1)::timestamptz);"
	  "      INSERT INTO events SELECT * FROM gridbridge_move;"
	  "    END IF;"
	  "  END LOOP;"
	  "  IF retention_days > 0 THEN"
	  "    FOR r IN SELECT c.relname FROM pg_inherits i"
	  "        JOIN pg_class c ON c.oid = i.inhrelid"
	  "        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'"
	  "          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < current_date - retention_days"
	  "        ORDER BY c.relname LOOP"
	  "      EXECUTE format('DROP TABLE %I', r.relname);"
	  "      RETURN NEXT r.relname;"
	  "    END LOOP;"
	  "    DELETE FROM events_default WHERE event_time < current_date - retention_days;"
	  "    DELETE FROM quarantine WHERE received_at < current_date - retention_days;"
	  "  END IF;"
	  "END $fn$;" },
	{ 2, "forward_outbox leases and retention",
	  /* The daemon that leased a row to send it (see the claim in
	   * store_outbox.c); NULL when nobody holds it. */
	  "ALTER TABLE forward_outbox ADD COLUMN claimed_by text;"
	  "CREATE INDEX forward_outbox_state ON forward_outbox (state, target);"
	  /* Outbox rows that are settled (sent or failed) are kept as the
	   * audit trail for as long as the events are. */
	  "CREATE FUNCTION gridbridge_maintain_outbox(retention_days integer)"
	  " RETURNS bigint LANGUAGE plpgsql AS $fn$"
	  "DECLARE n bigint := 0;"
	  "BEGIN"
	  "  IF retention_days > 0 THEN"
	  "    DELETE FROM forward_outbox WHERE state <> 'pending'"
	  "      AND created_at < current_date - retention_days;"
	  "    GET DIAGNOSTICS n = ROW_COUNT;"
	  "  END IF;"
	  "  RETURN n;"
	  "END $fn$;" },
	{ 3, "journal identity, one row per event id, receive-time retention, repeated reports",
	  /* A checkpoint belongs to one journal (its id), not to a node name
	   * that a new or copied journal can share. Rows of version 2 keep
	   * journal_id NULL and are no longer read. */
	  "ALTER TABLE ingest_checkpoint ADD COLUMN journal_id uuid;"
	  "ALTER TABLE ingest_checkpoint DROP CONSTRAINT ingest_checkpoint_pkey;"
	  "CREATE UNIQUE INDEX ingest_checkpoint_journal_id ON ingest_checkpoint (journal_id);"
	  "CREATE INDEX ingest_checkpoint_node ON ingest_checkpoint (journal_node);"
	  /* Journal sequence numbers start again in a new journal: quarantine
	   * rows are keyed by the journal too (earlier rows: the nil id). */
	  "ALTER TABLE quarantine ADD COLUMN journal_id uuid NOT NULL"
	  "  DEFAULT '00000000-0000-0000-0000-000000000000';"
	  "ALTER TABLE quarantine ALTER COLUMN journal_id DROP DEFAULT;"
	  "ALTER TABLE quarantine DROP CONSTRAINT quarantine_pkey;"
	  "ALTER TABLE quarantine ADD PRIMARY KEY (journal_node, journal_id, journal_seq);"
	  /* One row per event id, whatever the partition key: an event whose
	   * time is its receive time (no device time) comes back with another
	   * event_time when it is delivered again. Kept as long as events. */
	  "CREATE TABLE event_ids ("
	  "  id uuid PRIMARY KEY,"
	  "  received_at timestamptz NOT NULL"
	  ");"
	  "CREATE INDEX event_ids_received ON event_ids USING brin (received_at);"
	  "INSERT INTO event_ids (id, received_at)"
	  "  SELECT id, min(received_at) FROM events GROUP BY id;"
	  /* The last report of each topic that carries neither a device time
	   * nor a serial (see pipeline.c): an identical report within the
	   * repeat window, or retained, is the same event. */
	  "CREATE TABLE report_state ("
	  "  report_key bytea PRIMARY KEY,"
	  "  digest bytea NOT NULL,"
	  "  event_id uuid NOT NULL,"
	  "  event_time timestamptz NOT NULL,"
	  "  last_at timestamptz NOT NULL"
	  ");"
	  /* Retention follows the receive time: a device whose clock was reset
	   * to 1970 or 2000 sends events that arrived today. A daily partition
	   * past the retention is dropped, but the rows it holds that were
	   * received since the cutoff are moved to the DEFAULT partition first
	   * (one scan of that partition, once); DEFAULT, quarantine, event ids
	   * and report states go by their receive time. */
	  "CREATE OR REPLACE FUNCTION gridbridge_maintain_partitions(ahead integer,"
	  "  retention_days integer)"
	  " RETURNS SETOF text LANGUAGE plpgsql AS $fn$"
	  "DECLARE d date; part text; r record; cutoff timestamptz;"
	  "BEGIN"
	  "  FOR d IN SELECT generate_series(current_date - 1, current_date + ahead, '1 day')::date LOOP"
	  "    part := 'events_p' || to_char(d, 'YYYYMMDD');"
	  "    IF to_regclass(part) IS NULL THEN"
	  "      CREATE TEMP TABLE IF NOT EXISTS gridbridge_move (LIKE events) ON COMMIT DROP;"
	  "      DELETE FROM gridbridge_move;"
	  "      WITH moved AS (DELETE FROM events_default"
	  "          WHERE event_time >= d AND event_time < d + 1 RETURNING *)"
	  "        INSERT INTO gridbridge_move SELECT * FROM moved;"
	  "      EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',"
	  "        part, d::timestamptz, (d + 1)::timestamptz);"
	  "      INSERT INTO events SELECT * FROM gridbridge_move;"
	  "    END IF;"
	  "  END LOOP;"
	  "  IF retention_days > 0 THEN"
	  "    cutoff := (current_date - retention_days)::timestamptz;"
	  "    FOR r IN SELECT c.relname FROM pg_inherits i"
	  "        JOIN pg_class c ON c.oid = i.inhrelid"
	  "        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'"
	  "          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < current_date - retention_days"
	  "        ORDER BY c.relname LOOP"
	  "      CREATE TEMP TABLE IF NOT EXISTS gridbridge_keep (LIKE events) ON COMMIT DROP;"
	  "      DELETE FROM gridbridge_keep;"
	  "      EXECUTE format('INSERT INTO gridbridge_keep SELECT * FROM %I WHERE received_at >= %L',"
	  "        r.relname, cutoff);"
	  "      EXECUTE format('DROP TABLE %I', r.relname);"
	  "      INSERT INTO events SELECT * FROM gridbridge_keep;"
	  "      RETURN NEXT r.relname;"
	  "    END LOOP;"
	  "    DELETE FROM events_default WHERE received_at < cutoff;"
	  "    DELETE FROM quarantine WHERE received_at < cutoff;"
	  "    DELETE FROM event_ids WHERE received_at < cutoff;"
	  "    DELETE FROM report_state WHERE last_at < cutoff;"
	  "  END IF;"
	  "END $fn$;" },
	{ 4, "GA/T 1400 subscriptions of cascade targets",
	  /* What a police platform subscribed to at a cascade target (the
	   * listener's POST/PUT /VIID/Subscribes), kept when it ends for the
	   * record. The store fans each selected event out to one outbox row
	   * per active subscription that wants it: target "<target>/<id>".
	   * details: the SubscribeDetail codes served (3 catalogue, 4 device
	   * status, 12 faces, 13 motor vehicles); devices: our device ids its
	   * ResourceURI covers, NULL for all; catalogue_*: the catalogue
	   * pushed once after it was made. */
	  "CREATE TABLE viid_subscriptions ("
	  "  target text NOT NULL,"
	  "  subscribe_id text NOT NULL,"
	  "  state text NOT NULL DEFAULT 'active'"
	  "    CHECK (state IN ('active', 'cancelled', 'deleted')),"
	  "  details smallint[] NOT NULL,"
	  "  devices text[],"
	  "  resources text[] NOT NULL DEFAULT '{}',"
	  "  receive_addr text NOT NULL,"
	  "  title text NOT NULL DEFAULT '',"
	  "  begin_time timestamptz,"
	  "  end_time timestamptz,"
	  "  report_interval integer,"
	  "  applicant_name text,"
	  "  applicant_org text,"
	  "  reason text,"
	  "  created_at timestamptz NOT NULL DEFAULT now(),"
	  "  updated_at timestamptz NOT NULL DEFAULT now(),"
	  "  ended_at timestamptz,"
	  "  end_reason text,"
	  "  catalogue_state text NOT NULL DEFAULT 'pending'"
	  "    CHECK (catalogue_state IN ('pending', 'sent', 'failed')),"
	  "  catalogue_attempts integer NOT NULL DEFAULT 0,"
	  "  catalogue_error text,"
	  "  PRIMARY KEY (target, subscribe_id)"
	  ");"
	  "CREATE INDEX viid_subscriptions_active ON viid_subscriptions (target)"
	  "  WHERE state = 'active';" },
	{ 5, "device registry, welfare and resident report states",
	  /* Every device heard from or declared in the configuration, with
	   * its online state: written with the batches, read at start (see
	   * derive.h). state_since is when the state began (the confirmed
	   * transition); last_seen is written at most once a minute between
	   * other changes. */
	  "CREATE TABLE devices ("
	  "  community_id text NOT NULL,"
	  "  device_id text NOT NULL,"
	  "  device_class text NOT NULL,"
	  "  route text NOT NULL DEFAULT '',"
	  "  vendor text NOT NULL DEFAULT '',"
	  "  expected boolean NOT NULL DEFAULT false,"
	  "  first_seen timestamptz,"
	  "  last_seen timestamptz,"
	  "  state text NOT NULL DEFAULT 'unknown'"
	  "    CHECK (state IN ('online', 'offline', 'unknown')),"
	  "  state_since timestamptz NOT NULL,"
	  "  state_source text NOT NULL DEFAULT '',"
	  /* A change of state not yet confirmed (the hold-down against
	   * flapping): what and since when; NULL: none. */
	  "  pending_state text CHECK (pending_state IN ('online', 'offline')),"
	  "  pending_since timestamptz,"
	  "  pending_source text,"
	  "  battery_percent smallint,"
	  "  link_quality smallint,"
	  "  created_at timestamptz NOT NULL DEFAULT now(),"
	  "  updated_at timestamptz NOT NULL DEFAULT now(),"
	  "  PRIMARY KEY (community_id, device_id)"
	  ");"
	  "CREATE INDEX devices_state ON devices (community_id, device_class, state);"
	  /* Each [welfare HOUSEHOLD]: the inactivity window under way and what
	   * was raised for it, the night's door openings. */
	  "CREATE TABLE welfare_state ("
	  "  household text PRIMARY KEY,"
	  "  community_id text NOT NULL,"
	  "  last_activity timestamptz,"
	  "  window_start timestamptz NOT NULL,"
	  "  alerts integer NOT NULL DEFAULT 0,"
	  "  alert_window_start timestamptz,"
	  "  sensor_offline boolean NOT NULL DEFAULT false,"
	  "  night_start timestamptz,"
	  "  night_openings integer NOT NULL DEFAULT 0,"
	  "  night_alerted boolean NOT NULL DEFAULT false,"
	  "  updated_at timestamptz NOT NULL DEFAULT now()"
	  ");"
	  /* Resident reports (QR codes on building doors): when each was
	   * opened, due, handled and closed, and when it was reported overdue. */
	  "CREATE TABLE resident_reports ("
	  "  community_id text NOT NULL,"
	  "  report_id text NOT NULL,"
	  "  device_id text NOT NULL DEFAULT '',"
	  "  building text NOT NULL DEFAULT '',"
	  "  door text NOT NULL DEFAULT '',"
	  "  category text NOT NULL DEFAULT '',"
	  "  opened_at timestamptz,"
	  "  deadline timestamptz,"
	  "  handled_at timestamptz,"
	  "  closed_at timestamptz,"
	  "  overdue_at timestamptz,"
	  "  updated_at timestamptz NOT NULL DEFAULT now(),"
	  "  PRIMARY KEY (community_id, report_id)"
	  ");"
	  "CREATE INDEX resident_reports_opened ON resident_reports (community_id, opened_at);" },
	{ 6, "events by receive time",
	  /* gridbridgectl tail finds the rows a batch inserted by their
	   * receive time (the batch's notification gives the range, see
	   * store.h) and --since the last ones. BRIN: a few bytes per 128
	   * pages, next to nothing per insert, and in a daily partition the
	   * receive time follows the order rows are written in; autosummarize
	   * keeps the pages not yet summarised (scanned whole) to the last
	   * ones. */
	  "CREATE INDEX events_received ON events USING brin (received_at)"
	  "  WITH (autosummarize = on);" },
	{ 7, "quarantine summary rows of rate-limited devices",
	  /* A device over its rate limit (ratelimit.h) has one quarantine row
	   * per interval, reason rate_limited: its first held-back message as
	   * the sample (journal_seq, topic, raw), how many it held back in all
	   * (held_back, the sample included) and the last of them
	   * (held_back_through). NULL in every other row, each one message. */
	  "ALTER TABLE quarantine ADD COLUMN held_back bigint,"
	  "  ADD COLUMN held_back_through bigint;" },
	{ 8, "alarms by time, for the status page",
	  /* The status page (store_status.c) shows the latest camera alarms
	   * and welfare alerts every few seconds: a partial index, a few
	   * bytes per alarm, finds them without reading the other events. */
	  "CREATE INDEX events_alarms ON events (event_type, event_time)"
	  "  WHERE event_type IN ('camera_alarm', 'welfare_alert');" },
	{ 9, "leases of the derived event shards",
	  /* Several instances on one database: each shard of the derived
	   * events (derive.h, DERIVE_SHARDS: devices, households and reports
	   * by a hash) is evaluated by the one instance holding its lease
	   * (store_lease.h); expires_at is the server's clock. holder '':
	   * never held. derive_instances: each instance's last renewal, so
	   * an instance knows whether it is alone. events_skewed: below. */
	  "CREATE TABLE derive_leases ("
	  "  shard integer PRIMARY KEY CHECK (shard >= 0 AND shard < 64),"
	  "  holder text NOT NULL DEFAULT '',"
	  "  expires_at timestamptz NOT NULL DEFAULT '-infinity'"
	  ");"
	  "INSERT INTO derive_leases (shard) SELECT generate_series(0, 63);"
	  "CREATE TABLE derive_instances ("
	  "  holder text PRIMARY KEY,"
	  "  seen_at timestamptz NOT NULL"
	  ");"
	  /* The read-back finds a device's records by event time
	   * (events_device_time), but a device whose clock is off has its
	   * records at its own time: those by receive time. Partial: only
	   * such records pay for it. */
	  "CREATE INDEX events_skewed ON events (device_id, received_at) WHERE clock_skewed;" },
	{ 10, "leases of GA/T 1400 sessions shared by several daemons",
	  /* A viid target with session = shared: the daemon holding its row
	   * registers, keeps alive and sends; the others wait for the lease
	   * to run out (forward_leases_sql in store_outbox.c). */
	  "CREATE TABLE forward_leases ("
	  "  target text PRIMARY KEY,"
	  "  holder text NOT NULL,"
	  "  expires_at timestamptz NOT NULL,"
	  "  taken_at timestamptz NOT NULL DEFAULT now()"
	  ");" },
	{ 11, "events per minute, for the status page",
	  /* The status page shows today's events per class and type and the
	   * last hour's per minute every few seconds: counting them in
	   * events read a whole day's partition each time, millions of rows
	   * by evening at a community's rate. The batch that inserts events
	   * adds them here in the same statement (store_batch.c), so a row
	   * stored once is counted once; journal_node in the key keeps
	   * several instances off each other's rows. By event time, UTC
	   * minutes: a day in any whole-minute time zone is a range of them.
	   * Kept three days (store_maintain). Filled when created from the
	   * last 25 hours' events, all a status page shows (today in any
	   * time zone, the last hour): one pass over a day or two of
	   * partitions, not three. */
	  "CREATE TABLE event_counts ("
	  "  minute timestamptz NOT NULL,"
	  "  device_class text NOT NULL,"
	  "  event_type text NOT NULL,"
	  "  journal_node text NOT NULL,"
	  "  n bigint NOT NULL,"
	  "  PRIMARY KEY (minute, device_class, event_type, journal_node)"
	  ") WITH (fillfactor = 50);"
	  "INSERT INTO event_counts (minute, device_class, event_type, journal_node, n)"
	  "  SELECT date_trunc('minute', event_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
	  "    device_class, event_type, journal_node, count(*) FROM events"
	  "  WHERE event_time >= now() - interval '25 hours'"
	  "  GROUP BY 1, 2, 3, 4;" },
};

const struct schema_migration *
schema_migrations(size_t *n)
{
	*n = sizeof(migrations) / sizeof(migrations[0]);
	return migrations;
}

int
schema_version(void)
{
	return migrations[sizeof(migrations) / sizeof(migrations[0]) - 1].version;
}
