/* config.c — INI configuration driven by one table of keys. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define CONFIG_FIELD(field) offsetof(struct config, field)
#define ROUTE_FIELD(field) offsetof(struct config_route, field)
#define TARGET_FIELD(field) offsetof(struct config_target, field)
#define RULE_FIELD(field) offsetof(struct config_rule, field)
#define VDEV_FIELD(field) offsetof(struct config_viid_device, field)
#define DEV_FIELD(field) offsetof(struct config_device, field)
#define HH_FIELD(field) offsetof(struct config_welfare, field)

static const char *const level_choices[] = {
	"debug", "info", "notice", "warning", "warn", "error", NULL
};
static const int level_values[] = {
	LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN, LOG_LVL_WARN,
	LOG_LVL_ERROR
};

static const char *const format_choices[] = { "protobuf", "json", NULL };
static const int format_values[] = { FORWARD_PROTOBUF, FORWARD_JSON };

static const char *const profile_choices[] = { "gridbridge", "viid", NULL };
static const int profile_values[] = { FORWARD_PROFILE_GRIDBRIDGE, FORWARD_PROFILE_VIID };
static const char *const mode_choices[] = { "upload", "cascade", NULL };
static const int mode_values[] = { VIID_MODE_UPLOAD, VIID_MODE_CASCADE };
static const char *const session_choices[] = { "own", "shared", NULL };
static const int session_values[] = { VIID_SESSION_OWN, VIID_SESSION_SHARED };
static const char *const auth_choices[] = { "digest", "basic", "none", NULL };
static const int auth_values[] = { VIID_AUTH_DIGEST, VIID_AUTH_BASIC, VIID_AUTH_NONE };
static const char *const picture_choices[] = { "url", "data", NULL };
static const int picture_values[] = { VIID_PICTURE_URL, VIID_PICTURE_DATA };

static const char *const protocol_choices[] = { "3.1.1", "5", NULL };
static const int protocol_values[] = { 4, 5 };

static const char *const sslmode_choices[] = {
	"disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL
};
static const int sslmode_values[] = {
	SSLMODE_DISABLE, SSLMODE_ALLOW, SSLMODE_PREFER, SSLMODE_REQUIRE, SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL,
};

/* For CFG_STRING/PATH/SECRET/URL (and each CFG_LIST item), min and max
 * bound the length in bytes. */
const struct config_key config_keys[] = {
	{ .section = "daemon", .name = "log_level", .type = CFG_ENUM,
	  .choices = level_choices, .choice_values = level_values, .def = "info",
	  .offset = CONFIG_FIELD(log_level),
	  .reloadable = true, .applied_by = CONFIG_APPLY_LOG,
	  .help = "least important level logged: debug, info, notice, warning or error" },
	{ .section = "daemon", .name = "log_rate_burst", .type = CFG_INT,
	  .min = 0, .max = 1000000, .def = "10",
	  .offset = CONFIG_FIELD(log_rate_burst),
	  .reloadable = true, .applied_by = CONFIG_APPLY_LOG,
	  .help = "lines of one kind logged per interval before repeats are counted, not printed (0: no limit)" },
	{ .section = "daemon", .name = "log_rate_interval", .type = CFG_INT,
	  .min = 1, .max = 3600, .def = "10",
	  .offset = CONFIG_FIELD(log_rate_interval),
	  .reloadable = true, .applied_by = CONFIG_APPLY_LOG,
	  .help = "seconds of the rate-limit window; the next line reports suppressed=N" },
	{ .section = "daemon", .name = "stats_interval", .type = CFG_INT,
	  .min = 0, .max = 86400, .def = "300",
	  .offset = CONFIG_FIELD(stats_interval),
	  .help = "seconds between msg=\"stats\" lines (received, stored, quarantined, backlog, "
	      "forward pending, devices online); 0: none" },
	{ .section = "daemon", .name = "state_dir", .type = CFG_PATH,
	  .min = 1, .max = PATH_MAX, .def = "/var/lib/gridbridge",
	  .offset = CONFIG_FIELD(state_dir),
	  .help = "directory for the journal and other state; created if missing" },
	{ .section = "daemon", .name = "clock_offset_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(clock_offset_file),
	  .help = "for tests only: a file holding seconds added to the system clock (re-read every "
	      "second); empty: the system clock" },

	{ .section = "mqtt", .name = "host", .type = CFG_STRING,
	  .min = 1, .max = 255, .def = "127.0.0.1",
	  .offset = CONFIG_FIELD(mqtt_host),
	  .help = "broker host name or address" },
	{ .section = "mqtt", .name = "port", .type = CFG_INT,
	  .min = 1, .max = 65535, .def = "1883",
	  .offset = CONFIG_FIELD(mqtt_port),
	  .help = "broker TCP port" },
	{ .section = "mqtt", .name = "client_id", .type = CFG_STRING,
	  .min = 1, .max = 255, .def = "gridbridge",
	  .offset = CONFIG_FIELD(mqtt_client_id),
	  .help = "MQTT client id and node name, one per daemon and fixed, so the broker keeps our "
	      "persistent session; %h: the host name, %i: the instance name (-i), %%: a %; at most "
	      "64 bytes once expanded" },
	{ .section = "mqtt", .name = "keepalive", .type = CFG_INT,
	  .min = 5, .max = 3600, .def = "60",
	  .offset = CONFIG_FIELD(mqtt_keepalive),
	  .help = "MQTT keepalive in seconds" },
	{ .section = "mqtt", .name = "username", .type = CFG_STRING,
	  .min = 0, .max = 65535, .def = "",
	  .offset = CONFIG_FIELD(mqtt_username),
	  .help = "user name for the broker; empty: connect anonymously" },
	{ .section = "mqtt", .name = "password", .type = CFG_SECRET,
	  .min = 0, .max = 65535, .def = "",
	  .offset = CONFIG_FIELD(mqtt_password),
	  .help = "password for the broker; prefer password_file" },
	{ .section = "mqtt", .name = "password_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_password_file),
	  .help = "file holding the broker password; a relative name is looked up in $CREDENTIALS_DIRECTORY" },

	{ .section = "mqtt", .name = "protocol", .type = CFG_ENUM,
	  .choices = protocol_choices, .choice_values = protocol_values, .def = "3.1.1",
	  .offset = CONFIG_FIELD(mqtt_protocol),
	  .help = "MQTT protocol version: 3.1.1 or 5" },
	{ .section = "mqtt", .name = "session_expiry", .type = CFG_INT,
	  .min = 1, .max = 4294967295LL, .def = "4294967295",
	  .offset = CONFIG_FIELD(mqtt_session_expiry),
	  .help = "MQTT 5: seconds the broker keeps our session while we are away (4294967295: never expires)" },
	{ .section = "mqtt", .name = "receive_maximum", .type = CFG_INT,
	  .min = 1, .max = 65535, .def = "20",
	  .offset = CONFIG_FIELD(mqtt_receive_maximum),
	  .help = "MQTT 5: QoS 1 messages the broker may send before our acknowledgements (our in-flight window)" },
	{ .section = "mqtt", .name = "subscribe", .type = CFG_LIST,
	  .min = 1, .max = 65535, .def = "#",
	  .offset = CONFIG_FIELD(mqtt_subscribe),
	  .help = "topic filter subscribed with QoS 1; repeat the key for more filters" },
	{ .section = "mqtt", .name = "share_group", .type = CFG_STRING,
	  .min = 0, .max = CONFIG_SHARE_GROUP_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_share_group),
	  .help = "when set, every filter is subscribed as $share/<group>/<filter>: the daemons of "
	      "one group share the messages (no /, + or #); empty: off" },
	{ .section = "mqtt", .name = "shared_group", .type = CFG_STRING,
	  .min = 0, .max = CONFIG_SHARE_GROUP_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_shared_group),
	  .help = "the former name of share_group, still accepted; set one of them" },
	{ .section = "mqtt", .name = "max_message_size", .type = CFG_SIZE,
	  .min = 1024, .max = 256LL << 20, .def = "1M",
	  .offset = CONFIG_FIELD(mqtt_max_message_size),
	  .help = "larger messages are journaled as oversize (topic and length only) and quarantined" },
	{ .section = "mqtt", .name = "tls", .type = CFG_BOOL,
	  .def = "false",
	  .offset = CONFIG_FIELD(mqtt_tls),
	  .help = "connect with TLS (1.2 or newer), verifying the broker's certificate and host name" },
	{ .section = "mqtt", .name = "ca_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_ca_file),
	  .help = "PEM file of the CA(s) that signed the broker's certificate; required with tls" },
	{ .section = "mqtt", .name = "cert_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_cert_file),
	  .help = "PEM client certificate for brokers that require one (with key_file)" },
	{ .section = "mqtt", .name = "key_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(mqtt_key_file),
	  .help = "PEM private key of cert_file; a relative name is looked up in $CREDENTIALS_DIRECTORY" },

	{ .section = "journal", .name = "segment_size", .type = CFG_SIZE,
	  .min = 64LL << 10, .max = 1LL << 30, .def = "64M",
	  .offset = CONFIG_FIELD(journal_segment_size),
	  .help = "size at which a journal segment file is closed and a new one started" },
	{ .section = "journal", .name = "disk_cap", .type = CFG_SIZE,
	  .min = 64LL << 10, .max = 1LL << 50, .def = "8G",
	  .offset = CONFIG_FIELD(journal_disk_cap),
	  .reloadable = true, .applied_by = CONFIG_APPLY_JOURNAL,
	  .help = "journal size at which ingest pauses (never drops) until space frees" },
	{ .section = "journal", .name = "sync_batch", .type = CFG_INT,
	  .min = 1, .max = 100000, .def = "1000",
	  .offset = CONFIG_FIELD(journal_sync_batch),
	  .help = "records appended before an fdatasync even if the broker is still sending" },
	{ .section = "journal", .name = "sync_delay_ms", .type = CFG_INT,
	  .min = 0, .max = 1000, .def = "50",
	  .offset = CONFIG_FIELD(journal_sync_delay_ms),
	  .help = "milliseconds a message that came alone waits for others to share its fdatasync "
	      "and PUBACK (0: synced at once)" },
	{ .section = "journal", .name = "sync_delay_rows", .type = CFG_INT,
	  .min = 1, .max = 65535, .def = "10",
	  .offset = CONFIG_FIELD(journal_sync_delay_rows),
	  .help = "the wait ends once about this many messages could have come at the recent rate; "
	      "keep it below the broker's in-flight window" },

	{ .section = "decode", .name = "max_clock_skew", .type = CFG_INT,
	  .min = 1, .max = 31536000, .def = "300",
	  .offset = CONFIG_FIELD(decode_max_clock_skew),
	  .reloadable = true, .applied_by = CONFIG_APPLY_DECODE,
	  .help = "seconds a device's clock may differ from ours before its records are flagged clock_skewed" },
	{ .section = "decode", .name = "repeat_window", .type = CFG_INT,
	  .min = 0, .max = 604800, .def = "600",
	  .offset = CONFIG_FIELD(decode_repeat_window),
	  .reloadable = true, .applied_by = CONFIG_APPLY_DECODE,
	  .help = "seconds within which a report with neither device time nor serial, identical to the "
	      "previous one on its topic, is the same event (0: only retained copies are)" },
	{ .section = "decode", .name = "repeat_topics", .type = CFG_INT,
	  .min = 1, .max = 10000000, .def = "100000",
	  .offset = CONFIG_FIELD(decode_repeat_topics),
	  .help = "topics whose last such report is remembered (the least recently reported is "
	      "forgotten first)" },
	{ .section = "decode", .name = "rate_limit", .type = CFG_INT,
	  .min = 0, .max = 1000000, .def = "0",
	  .offset = CONFIG_FIELD(decode_rate_limit),
	  .help = "messages a second a device may send; more are held back, counted in one "
	      "quarantine row per device and minute (0: no limit)" },
	{ .section = "decode", .name = "rate_burst", .type = CFG_INT,
	  .min = 1, .max = 1000000, .def = "100",
	  .offset = CONFIG_FIELD(decode_rate_burst),
	  .help = "messages a device may send at once above rate_limit" },
	{ .section = "decode", .name = "rate_limit_devices", .type = CFG_INT,
	  .min = 1, .max = 10000000, .def = "100000",
	  .offset = CONFIG_FIELD(decode_rate_limit_devices),
	  .help = "devices whose rate is tracked (idle ones are forgotten first; beyond, not limited)" },

	{ .section = "route", .name = "pattern", .type = CFG_STRING,
	  .min = 0, .max = 65535, .def = "",
	  .offset = ROUTE_FIELD(pattern), .instanced = true, .required = true,
	  .help = "topic pattern: {name} captures a level, {name...} one or more, + matches one; required" },
	{ .section = "route", .name = "decoder", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = ROUTE_FIELD(decoder), .instanced = true, .required = true,
	  .help = "payload format: access, hikvision, dahua, camera_alarm, peephole, gateway, z2m_device, "
	      "z2m_availability, z2m_bridge, shelly_sensor, shelly_online, tasmota_lwt or report; "
	      "required" },
	{ .section = "route", .name = "class", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = ROUTE_FIELD(device_class), .instanced = true, .required = true,
	  .help = "device class: access_gate, vehicle_barrier, camera, door_sensor, peephole, gateway "
	      "or report_point; required" },
	{ .section = "route", .name = "community", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = ROUTE_FIELD(community), .instanced = true,
	  .help = "community of the devices when the pattern has no {community}" },
	{ .section = "route", .name = "timezone", .type = CFG_STRING,
	  .min = 1, .max = 16, .def = "+08:00",
	  .offset = ROUTE_FIELD(timezone), .instanced = true,
	  .help = "zone of device times written without an offset, as +HH:MM" },
	{ .section = "route", .name = "heartbeat_timeout", .type = CFG_INT,
	  .min = -1, .max = 2592000, .def = "-1",
	  .offset = ROUTE_FIELD(heartbeat_timeout), .instanced = true,
	  .help = "seconds without a message before its devices are offline; 0: never; -1: the "
	      "class's ([registry])" },
	{ .section = "route", .name = "utc_is_local", .type = CFG_BOOL,
	  .def = "true",
	  .offset = ROUTE_FIELD(utc_is_local), .instanced = true,
	  .help = "Dahua: the UTC field holds local wall-clock time (RealUTC is preferred when present)" },
	{ .section = "route", .name = "rate_limit", .type = CFG_INT,
	  .min = -1, .max = 1000000, .def = "-1",
	  .offset = ROUTE_FIELD(rate_limit), .instanced = true,
	  .help = "messages a second each of its devices may send; 0: no limit; -1: [decode] "
	      "rate_limit" },
	{ .section = "route", .name = "rate_burst", .type = CFG_INT,
	  .min = -1, .max = 1000000, .def = "-1",
	  .offset = ROUTE_FIELD(rate_burst), .instanced = true,
	  .help = "messages each of its devices may send at once above its rate; -1: [decode] "
	      "rate_burst" },

	{ .section = "forward.target", .name = "url", .type = CFG_URL,
	  .min = 0, .max = 4096, .def = "",
	  .offset = TARGET_FIELD(url), .instanced = true, .required = true,
	  .help = "https:// URL the event batches are POSTed to; required" },
	{ .section = "forward.target", .name = "allow_http", .type = CFG_BOOL,
	  .def = "false",
	  .offset = TARGET_FIELD(allow_http), .instanced = true,
	  .help = "accept an http:// url: events go out in clear (never with a token_file)" },
	{ .section = "forward.target", .name = "format", .type = CFG_ENUM,
	  .choices = format_choices, .choice_values = format_values, .def = "protobuf",
	  .offset = TARGET_FIELD(format), .instanced = true,
	  .help = "body: protobuf (an EventBatch, application/x-protobuf) or json (its proto3 JSON mapping)" },
	{ .section = "forward.target", .name = "ca_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(ca_file), .instanced = true,
	  .help = "CA certificates the platform's certificate is verified against; empty: the system's" },
	{ .section = "forward.target", .name = "cert_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(cert_file), .instanced = true,
	  .help = "our client certificate (PEM) for mutual TLS; goes with key_file" },
	{ .section = "forward.target", .name = "key_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(key_file), .instanced = true,
	  .help = "private key of cert_file (PEM); a relative name is looked up in $CREDENTIALS_DIRECTORY" },
	{ .section = "forward.target", .name = "token_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(token_file), .instanced = true,
	  .help = "file holding a bearer token sent as Authorization; a relative name is looked up in "
	      "$CREDENTIALS_DIRECTORY; empty: none" },
	{ .section = "forward.target", .name = "proxy", .type = CFG_URL,
	  .min = 0, .max = 4096, .def = "",
	  .offset = TARGET_FIELD(proxy), .instanced = true,
	  .help = "proxy URL (http://host:port); empty: none (proxy environment variables are ignored)" },
	{ .section = "forward.target", .name = "connect_timeout", .type = CFG_INT,
	  .min = 1, .max = 300, .def = "10",
	  .offset = TARGET_FIELD(connect_timeout), .instanced = true,
	  .help = "seconds allowed for the TCP and TLS handshake" },
	{ .section = "forward.target", .name = "timeout", .type = CFG_INT,
	  .min = 1, .max = 3600, .def = "30",
	  .offset = TARGET_FIELD(timeout), .instanced = true,
	  .help = "seconds allowed for a whole request; then it is retried" },
	{ .section = "forward.target", .name = "batch_rows", .type = CFG_INT,
	  .min = 1, .max = 10000, .def = "100",
	  .offset = TARGET_FIELD(batch_rows), .instanced = true,
	  .help = "events per request at most" },
	{ .section = "forward.target", .name = "batch_bytes", .type = CFG_SIZE,
	  .min = 1024, .max = 64LL << 20, .def = "1M",
	  .offset = TARGET_FIELD(batch_bytes), .instanced = true,
	  .help = "bytes of records per request at most (a single larger record is sent alone)" },
	{ .section = "forward.target", .name = "linger_ms", .type = CFG_INT,
	  .min = 0, .max = 10000, .def = "200",
	  .offset = TARGET_FIELD(linger_ms), .instanced = true,
	  .help = "when a stored batch brings fewer events to forward than a quarter of batch_rows, "
	      "the routine lane waits this long for more before it asks for them (0: at once); "
	      "alarms never wait" },
	{ .section = "forward.target", .name = "max_inflight", .type = CFG_INT,
	  .min = 1, .max = 64, .def = "4",
	  .offset = TARGET_FIELD(max_inflight), .instanced = true,
	  .help = "requests in flight at once in each lane (alarm, routine)" },
	{ .section = "forward.target", .name = "retry_base_ms", .type = CFG_INT,
	  .min = 1, .max = 3600000, .def = "1000",
	  .offset = TARGET_FIELD(retry_base_ms), .instanced = true,
	  .help = "first retry waits up to this long; doubles per failure (full jitter)" },
	{ .section = "forward.target", .name = "retry_cap_ms", .type = CFG_INT,
	  .min = 1, .max = 86400000, .def = "60000",
	  .offset = TARGET_FIELD(retry_cap_ms), .instanced = true,
	  .help = "longest wait between retries (a longer Retry-After is honoured, up to retry_after_max)" },
	{ .section = "forward.target", .name = "max_attempts", .type = CFG_INT,
	  .min = 0, .max = 1000000, .def = "0",
	  .offset = TARGET_FIELD(max_attempts), .instanced = true,
	  .help = "requests tried before the rows are marked failed (0: retry for ever)" },
	{ .section = "forward.target", .name = "max_age", .type = CFG_INT,
	  .min = 0, .max = 315360000, .def = "0",
	  .offset = TARGET_FIELD(max_age), .instanced = true,
	  .help = "seconds after its creation a row that fails again is marked failed (0: no limit)" },
	{ .section = "forward.target", .name = "retry_after_max", .type = CFG_INT,
	  .min = 1, .max = 86400, .def = "300",
	  .offset = TARGET_FIELD(retry_after_max), .instanced = true,
	  .help = "longest Retry-After honoured, in seconds (a longer one is cut to this, logged)" },
	{ .section = "forward.target", .name = "lease_margin", .type = CFG_INT,
	  .min = 1, .max = 3600, .def = "30",
	  .offset = TARGET_FIELD(lease_margin), .instanced = true,
	  .help = "seconds added to connect_timeout + timeout for the lease on the rows a request "
	      "sends: another daemon takes over a dead one's rows when it runs out" },
	{ .section = "forward.target", .name = "alarm_priority", .type = CFG_INT,
	  .min = 1, .max = 10, .def = "7",
	  .offset = TARGET_FIELD(alarm_priority), .instanced = true,
	  .help = "rows of this priority and above travel in the alarm lane (10: no alarm lane)" },
	{ .section = "forward.target", .name = "profile", .type = CFG_ENUM,
	  .choices = profile_choices, .choice_values = profile_values, .def = "gridbridge",
	  .offset = TARGET_FIELD(profile), .instanced = true,
	  .help = "protocol: gridbridge (EventBatch bodies) or viid (GA/T 1400 views library)" },
	{ .section = "forward.target", .name = "mode", .type = CFG_ENUM,
	  .choices = mode_choices, .choice_values = mode_values, .def = "upload",
	  .offset = TARGET_FIELD(viid_mode), .instanced = true,
	  .help = "viid: upload (we register and POST objects) or cascade (the platform subscribes "
	      "at our listener; we register and push notifications)" },
	{ .section = "forward.target", .name = "viid_device_id", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = TARGET_FIELD(viid_device_id), .instanced = true,
	  .help = "viid: our 20-digit GA/T 1400 id, sent as User-Identify; required with profile = viid" },
	{ .section = "forward.target", .name = "session", .type = CFG_ENUM,
	  .choices = session_choices, .choice_values = session_values, .def = "own",
	  .offset = TARGET_FIELD(viid_session), .instanced = true,
	  .help = "viid upload: own (this daemon registers with its viid_device_id) or shared "
	      "(the daemons sharing the database register one viid_device_id in turn: the one "
	      "holding the target's lease in the database registers, keeps alive and sends)" },
	{ .section = "forward.target", .name = "session_lease", .type = CFG_INT,
	  .min = 6, .max = 3600, .def = "60",
	  .offset = TARGET_FIELD(session_lease), .instanced = true,
	  .help = "viid, session = shared: seconds a daemon holds the session after its last "
	      "renewal (every third of it); when it dies, another registers after that long" },
	{ .section = "forward.target", .name = "username", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = TARGET_FIELD(username), .instanced = true,
	  .help = "viid: user name for Digest or Basic authentication; empty: viid_device_id" },
	{ .section = "forward.target", .name = "password_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(password_file), .instanced = true,
	  .help = "viid: file holding the password; a relative name is looked up in "
	      "$CREDENTIALS_DIRECTORY; required unless auth = none" },
	{ .section = "forward.target", .name = "auth", .type = CFG_ENUM,
	  .choices = auth_choices, .choice_values = auth_values, .def = "digest",
	  .offset = TARGET_FIELD(auth), .instanced = true,
	  .help = "viid: digest, basic (https:// only) or none" },
	{ .section = "forward.target", .name = "keepalive_s", .type = CFG_INT,
	  .min = 5, .max = 3600, .def = "30",
	  .offset = TARGET_FIELD(keepalive_s), .instanced = true,
	  .help = "viid: seconds between keepalives while registered" },
	{ .section = "forward.target", .name = "register_retry_max_s", .type = CFG_INT,
	  .min = 1, .max = 86400, .def = "300",
	  .offset = TARGET_FIELD(register_retry_max_s), .instanced = true,
	  .help = "viid: longest wait before registering again after the session went down" },
	{ .section = "forward.target", .name = "time_skew_warn_s", .type = CFG_INT,
	  .min = 1, .max = 86400, .def = "5",
	  .offset = TARGET_FIELD(time_skew_warn_s), .instanced = true,
	  .help = "viid: warn when the platform's clock differs from ours by more seconds" },
	{ .section = "forward.target", .name = "listen", .type = CFG_STRING,
	  .min = 0, .max = 300, .def = "",
	  .offset = TARGET_FIELD(listen), .instanced = true,
	  .help = "viid cascade: address:port of our listener for the platform's /VIID/Subscribes "
	      "(e.g. 0.0.0.0:8443, [::]:8443); required with mode = cascade" },
	{ .section = "forward.target", .name = "listen_cert_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(listen_cert_file), .instanced = true,
	  .help = "viid cascade: the listener's certificate chain (PEM); empty: plain HTTP "
	      "(only with allow_http = true)" },
	{ .section = "forward.target", .name = "listen_key_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(listen_key_file), .instanced = true,
	  .help = "viid cascade: private key of listen_cert_file (PEM); a relative name is looked "
	      "up in $CREDENTIALS_DIRECTORY" },
	{ .section = "forward.target", .name = "listen_ca_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(listen_ca_file), .instanced = true,
	  .help = "viid cascade: CA certificates the platform's client certificate must verify "
	      "against; empty: no client certificate asked for" },
	{ .section = "forward.target", .name = "listen_username", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = TARGET_FIELD(listen_username), .instanced = true,
	  .help = "viid cascade: the user name the platform gives in its Digest answers; required "
	      "with mode = cascade" },
	{ .section = "forward.target", .name = "listen_password_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(listen_password_file), .instanced = true,
	  .help = "viid cascade: file holding the password the platform must answer Digest with; "
	      "a relative name is looked up in $CREDENTIALS_DIRECTORY; required with mode = cascade" },
	{ .section = "forward.target", .name = "platform_id", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = TARGET_FIELD(platform_id), .instanced = true,
	  .help = "viid cascade: the platform's 20-digit id; when set, its requests must carry it as "
	      "User-Identify" },
	{ .section = "forward.target", .name = "org_code", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = TARGET_FIELD(org_code), .instanced = true,
	  .help = "viid cascade: 12-digit organisation code of NotificationIDs; empty: the first 12 "
	      "digits of viid_device_id" },
	{ .section = "forward.target", .name = "notify_auth", .type = CFG_ENUM,
	  .choices = auth_choices, .choice_values = auth_values, .def = "none",
	  .offset = TARGET_FIELD(notify_auth), .instanced = true,
	  .help = "viid cascade: authentication of our notifications to a ReceiveAddr: none (the "
	      "platform knows us by our session and User-Identify), digest or basic (username and "
	      "password_file)" },
	{ .section = "forward.target", .name = "max_subscriptions", .type = CFG_INT,
	  .min = 1, .max = 1000, .def = "16",
	  .offset = TARGET_FIELD(max_subscriptions), .instanced = true,
	  .help = "viid cascade: active subscriptions at most; a platform asking for more is "
	      "refused" },
	{ .section = "forward.target", .name = "picture", .type = CFG_ENUM,
	  .choices = picture_choices, .choice_values = picture_values, .def = "url",
	  .offset = TARGET_FIELD(picture), .instanced = true,
	  .help = "viid: url (the device's picture URL as StoragePath) or data (the picture fetched "
	      "from the device, sent as base64 Data)" },
	{ .section = "forward.target", .name = "picture_max_bytes", .type = CFG_SIZE,
	  .min = 1024, .max = 16LL << 20, .def = "1M",
	  .offset = TARGET_FIELD(picture_max_bytes), .instanced = true,
	  .help = "viid, picture = data: a larger picture is not sent (its event fails, "
	      "picture_missing)" },
	{ .section = "forward.target", .name = "picture_timeout", .type = CFG_INT,
	  .min = 1, .max = 300, .def = "10",
	  .offset = TARGET_FIELD(picture_timeout), .instanced = true,
	  .help = "viid, picture = data: seconds allowed for fetching one picture from its device" },
	{ .section = "forward.target", .name = "picture_ca_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(picture_ca_file), .instanced = true,
	  .help = "viid, picture = data: CA certificates of devices serving pictures over https; "
	      "empty: the system's" },
	{ .section = "forward.target", .name = "picture_username", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = TARGET_FIELD(picture_username), .instanced = true,
	  .help = "viid, picture = data: user name the devices ask for (Digest or Basic); empty: none" },
	{ .section = "forward.target", .name = "picture_password_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = TARGET_FIELD(picture_password_file), .instanced = true,
	  .help = "viid, picture = data: file holding the devices' password; a relative name is "
	      "looked up in $CREDENTIALS_DIRECTORY" },

	{ .section = "forward.rule", .name = "target", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = RULE_FIELD(target), .instanced = true, .required = true,
	  .help = "the [forward.target NAME] the selected events go to; required" },
	{ .section = "forward.rule", .name = "priority", .type = CFG_INT,
	  .min = 0, .max = 9, .def = "5",
	  .offset = RULE_FIELD(priority), .instanced = true,
	  .help = "0-9, higher is sent first; an event several rules select goes once, at the highest" },
	{ .section = "forward.rule", .name = "class", .type = CFG_STRING,
	  .min = 0, .max = 1024, .def = "",
	  .offset = RULE_FIELD(device_class), .instanced = true,
	  .help = "device classes selected (comma-separated, e.g. access_gate, camera); empty: any" },
	{ .section = "forward.rule", .name = "event_type", .type = CFG_STRING,
	  .min = 0, .max = 1024, .def = "",
	  .offset = RULE_FIELD(event_type), .instanced = true,
	  .help = "event types selected (e.g. person_passage, device_offline); empty: any" },
	{ .section = "forward.rule", .name = "severity", .type = CFG_STRING,
	  .min = 0, .max = 1024, .def = "",
	  .offset = RULE_FIELD(severity), .instanced = true,
	  .help = "severities selected (info, notice, warning, critical); empty: any" },
	{ .section = "forward.rule", .name = "community", .type = CFG_STRING,
	  .min = 0, .max = 4096, .def = "",
	  .offset = RULE_FIELD(community), .instanced = true,
	  .help = "community ids selected; empty: any" },
	{ .section = "forward.rule", .name = "route", .type = CFG_STRING,
	  .min = 0, .max = 4096, .def = "",
	  .offset = RULE_FIELD(route), .instanced = true,
	  .help = "names of the [route NAME] sections selected; empty: any" },

	{ .section = "viid.device", .name = "device", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = VDEV_FIELD(device), .instanced = true, .required = true,
	  .help = "the device id, as in the events; required" },
	{ .section = "viid.device", .name = "community", .type = CFG_STRING,
	  .min = 0, .max = 255, .def = "",
	  .offset = VDEV_FIELD(community), .instanced = true,
	  .help = "the community id of the device; empty: any" },
	{ .section = "viid.device", .name = "id", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = VDEV_FIELD(id), .instanced = true, .required = true,
	  .help = "its 20-digit GA/T 1400 device id (ApeID, DeviceID); required" },

	{ .section = "viid.device", .name = "name", .type = CFG_STRING,
	  .min = 0, .max = 100, .def = "",
	  .offset = VDEV_FIELD(dev_name), .instanced = true,
	  .help = "APEObject Name (the catalogue, device updates); empty: left out" },
	{ .section = "viid.device", .name = "model", .type = CFG_STRING,
	  .min = 0, .max = 100, .def = "",
	  .offset = VDEV_FIELD(model), .instanced = true,
	  .help = "APEObject Model; empty: left out" },
	{ .section = "viid.device", .name = "function_type", .type = CFG_STRING,
	  .min = 0, .max = 30, .def = "",
	  .offset = VDEV_FIELD(function_type), .instanced = true,
	  .help = "APEObject FunctionType (1 vehicle checkpoint, 2 person checkpoint, 5 general "
	      "surveillance, ...); empty: from the device class (99 in the catalogue)" },
	{ .section = "viid.device", .name = "ip_addr", .type = CFG_STRING,
	  .min = 0, .max = 39, .def = "",
	  .offset = VDEV_FIELD(ip_addr), .instanced = true,
	  .help = "APEObject IPAddr; empty: left out" },
	{ .section = "viid.device", .name = "port", .type = CFG_INT,
	  .min = 0, .max = 65535, .def = "0",
	  .offset = VDEV_FIELD(port), .instanced = true,
	  .help = "APEObject Port; 0: left out" },
	{ .section = "viid.device", .name = "place_code", .type = CFG_STRING,
	  .min = 0, .max = 6, .def = "",
	  .offset = VDEV_FIELD(place_code), .instanced = true,
	  .help = "APEObject PlaceCode (6-digit administrative division); empty: left out" },
	{ .section = "viid.device", .name = "longitude", .type = CFG_STRING,
	  .min = 0, .max = 32, .def = "",
	  .offset = VDEV_FIELD(longitude), .instanced = true,
	  .help = "APEObject Longitude in degrees (-180..180); goes with latitude; empty: left out" },
	{ .section = "viid.device", .name = "latitude", .type = CFG_STRING,
	  .min = 0, .max = 32, .def = "",
	  .offset = VDEV_FIELD(latitude), .instanced = true,
	  .help = "APEObject Latitude in degrees (-90..90); empty: left out" },

	{ .section = "admin", .name = "listen", .type = CFG_STRING,
	  .min = 1, .max = 128, .def = "127.0.0.1:9464",
	  .offset = CONFIG_FIELD(admin_listen),
	  .help = "address:port of the admin listener (/healthz, /readyz, /metrics; IPv6 in []), "
	      "or none" },
	{ .section = "admin", .name = "max_connections", .type = CFG_INT,
	  .min = 1, .max = 1024, .def = "16",
	  .offset = CONFIG_FIELD(admin_max_connections),
	  .help = "connections the admin listener serves at once; more wait to be accepted" },
	{ .section = "admin", .name = "timeout", .type = CFG_INT,
	  .min = 1, .max = 300, .def = "10",
	  .offset = CONFIG_FIELD(admin_timeout),
	  .help = "seconds a connection to the admin listener may last, request and answer" },
	{ .section = "admin", .name = "ready_max_forward_lag", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "600",
	  .offset = CONFIG_FIELD(admin_ready_max_forward_lag),
	  .help = "/readyz fails while the oldest event waiting to be forwarded is older than this "
	      "many seconds; 0: forwarding never makes it fail" },
	{ .section = "admin", .name = "status_token_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(admin_status_token_file),
	  .help = "file holding a token the status page (/, /api/status, /api/events) wants as "
	      "Authorization: Bearer or ?token=; a relative name is looked up in "
	      "$CREDENTIALS_DIRECTORY; empty: the page is open to whoever reaches the listener" },
	{ .section = "admin", .name = "status_refresh", .type = CFG_INT,
	  .min = 1, .max = 300, .def = "5",
	  .offset = CONFIG_FIELD(admin_status_refresh),
	  .help = "seconds between the status page's database queries and live updates" },
	{ .section = "admin", .name = "status_timezone", .type = CFG_STRING,
	  .min = 1, .max = 16, .def = "+08:00",
	  .offset = CONFIG_FIELD(admin_status_timezone),
	  .help = "the communities' local time on the status page, as +HH:MM: \"today\" starts at "
	      "its midnight" },

	{ .section = "registry", .name = "hold_down", .type = CFG_INT,
	  .min = 0, .max = 86400, .def = "60",
	  .offset = CONFIG_FIELD(registry_hold_down),
	  .help = "seconds a device's new online state must hold before it counts (a change back "
	      "within it is flapping: no event)" },
	{ .section = "registry", .name = "expected_grace", .type = CFG_INT,
	  .min = 1, .max = 2592000, .def = "600",
	  .offset = CONFIG_FIELD(registry_expected_grace),
	  .help = "seconds a declared device ([device NAME]) may stay unheard from before it is "
	      "reported offline" },
	{ .section = "registry", .name = "max_devices", .type = CFG_INT,
	  .min = 1, .max = 10000000, .def = "100000",
	  .offset = CONFIG_FIELD(registry_max_devices),
	  .help = "devices the registry holds at most; more are stored but not tracked (logged once)" },
	{ .section = "registry", .name = "lease", .type = CFG_INT,
	  .min = 3, .max = 3600, .def = "20",
	  .offset = CONFIG_FIELD(registry_lease),
	  .help = "seconds an instance's lease on its share of the derived events lasts: with "
	      "several instances, another takes over that long after it died" },
	{ .section = "registry", .name = "heartbeat_timeout_access_gate", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "900",
	  .offset = CONFIG_FIELD(registry_timeout[1]),
	  .help = "seconds without a message before an access gate is offline; 0: never" },
	{ .section = "registry", .name = "heartbeat_timeout_vehicle_barrier", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "900",
	  .offset = CONFIG_FIELD(registry_timeout[2]),
	  .help = "... a vehicle barrier; 0: never" },
	{ .section = "registry", .name = "heartbeat_timeout_camera", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "900",
	  .offset = CONFIG_FIELD(registry_timeout[3]),
	  .help = "... a camera; 0: never" },
	{ .section = "registry", .name = "heartbeat_timeout_door_sensor", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "0",
	  .offset = CONFIG_FIELD(registry_timeout[4]),
	  .help = "... a door sensor (they report on change; their availability topic tells); 0: never" },
	{ .section = "registry", .name = "heartbeat_timeout_peephole", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "0",
	  .offset = CONFIG_FIELD(registry_timeout[5]),
	  .help = "... a peephole; 0: never" },
	{ .section = "registry", .name = "heartbeat_timeout_gateway", .type = CFG_INT,
	  .min = 0, .max = 2592000, .def = "0",
	  .offset = CONFIG_FIELD(registry_timeout[6]),
	  .help = "... a gateway (its LWT tells); 0: never" },

	{ .section = "device", .name = "device", .type = CFG_STRING,
	  .min = 0, .max = 128, .def = "",
	  .offset = DEV_FIELD(device), .instanced = true, .required = true,
	  .help = "the device id, as in the events; required" },
	{ .section = "device", .name = "community", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = DEV_FIELD(community), .instanced = true,
	  .help = "its community id, as in the events" },
	{ .section = "device", .name = "class", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = DEV_FIELD(device_class), .instanced = true, .required = true,
	  .help = "its class: access_gate, vehicle_barrier, camera, door_sensor, peephole or gateway; "
	      "required" },
	{ .section = "device", .name = "heartbeat_timeout", .type = CFG_INT,
	  .min = -1, .max = 2592000, .def = "-1",
	  .offset = DEV_FIELD(heartbeat_timeout), .instanced = true,
	  .help = "seconds without a message before it is offline; 0: never; -1: its route's or "
	      "class's" },
	{ .section = "device", .name = "expected", .type = CFG_BOOL,
	  .def = "true",
	  .offset = DEV_FIELD(expected), .instanced = true,
	  .help = "reported offline when never heard from within [registry] expected_grace" },

	{ .section = "welfare", .name = "community", .type = CFG_STRING,
	  .min = 0, .max = 64, .def = "",
	  .offset = HH_FIELD(community), .instanced = true,
	  .help = "the household's community id; empty: its sensors' ids alone decide" },
	{ .section = "welfare", .name = "door_sensors", .type = CFG_STRING,
	  .min = 0, .max = 1024, .def = "",
	  .offset = HH_FIELD(door_sensors), .instanced = true, .required = true,
	  .help = "the device ids of its door sensors, comma-separated; required" },
	{ .section = "welfare", .name = "peephole", .type = CFG_STRING,
	  .min = 0, .max = 128, .def = "",
	  .offset = HH_FIELD(peephole), .instanced = true,
	  .help = "the device id of its peephole; its events are given the household" },
	{ .section = "welfare", .name = "inactive_hours", .type = CFG_INT,
	  .min = 1, .max = 720, .def = "24",
	  .offset = HH_FIELD(inactive_hours), .instanced = true,
	  .help = "hours without a door opening (its sensors online) before a welfare alert" },
	{ .section = "welfare", .name = "repeat_hours", .type = CFG_INT,
	  .min = 0, .max = 720, .def = "12",
	  .offset = HH_FIELD(repeat_hours), .instanced = true,
	  .help = "hours between repeats of the alert while it lasts; 0: no repeats" },
	{ .section = "welfare", .name = "night_window", .type = CFG_STRING,
	  .min = 0, .max = 16, .def = "",
	  .offset = HH_FIELD(night_window), .instanced = true,
	  .help = "local HH:MM-HH:MM in which door openings are counted; empty: no night rule" },
	{ .section = "welfare", .name = "night_openings", .type = CFG_INT,
	  .min = 0, .max = 1000, .def = "2",
	  .offset = HH_FIELD(night_openings), .instanced = true,
	  .help = "more openings than this in one night window raise a night_activity alert" },
	{ .section = "welfare", .name = "timezone", .type = CFG_STRING,
	  .min = 1, .max = 16, .def = "+08:00",
	  .offset = HH_FIELD(timezone), .instanced = true,
	  .help = "the household's local time, as +HH:MM, for the night window" },

	{ .section = "store", .name = "host", .type = CFG_STRING,
	  .min = 1, .max = 255, .def = "127.0.0.1",
	  .offset = CONFIG_FIELD(store_host),
	  .help = "PostgreSQL server address (an IP address avoids a blocking DNS lookup) or socket "
	      "directory; or a comma-separated list (a primary and its standbys, one port): the "
	      "first that is not a standby is used" },
	{ .section = "store", .name = "port", .type = CFG_INT,
	  .min = 1, .max = 65535, .def = "5432",
	  .offset = CONFIG_FIELD(store_port),
	  .help = "PostgreSQL server port" },
	{ .section = "store", .name = "dbname", .type = CFG_STRING,
	  .min = 1, .max = 63, .def = "gridbridge",
	  .offset = CONFIG_FIELD(store_dbname),
	  .help = "database name" },
	{ .section = "store", .name = "user", .type = CFG_STRING,
	  .min = 1, .max = 63, .def = "gridbridge",
	  .offset = CONFIG_FIELD(store_user),
	  .help = "database role" },
	{ .section = "store", .name = "password", .type = CFG_SECRET,
	  .min = 0, .max = 65535, .def = "",
	  .offset = CONFIG_FIELD(store_password),
	  .help = "password of the database role; prefer password_file" },
	{ .section = "store", .name = "password_file", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(store_password_file),
	  .help = "file holding the database password; a relative name is looked up in $CREDENTIALS_DIRECTORY" },
	{ .section = "store", .name = "partitions_ahead", .type = CFG_INT,
	  .min = 1, .max = 366, .def = "7",
	  .offset = CONFIG_FIELD(store_partitions_ahead),
	  .help = "days of daily event partitions created ahead of time" },
	{ .section = "store", .name = "retention_days", .type = CFG_INT,
	  .min = 0, .max = 36500, .def = "180",
	  .offset = CONFIG_FIELD(store_retention_days),
	  .help = "events and quarantined messages older than this many days are deleted (0: keep all)" },
	{ .section = "store", .name = "batch_rows", .type = CFG_INT,
	  .min = 1, .max = 100000, .def = "500",
	  .offset = CONFIG_FIELD(store_batch_rows),
	  .help = "rows (events and quarantined messages) per database transaction at most" },
	{ .section = "store", .name = "batch_bytes", .type = CFG_SIZE,
	  .min = 4096, .max = 256LL << 20, .def = "1M",
	  .offset = CONFIG_FIELD(store_batch_bytes),
	  .help = "bytes of row data per transaction at most" },
	{ .section = "store", .name = "batch_ms", .type = CFG_INT,
	  .min = 1, .max = 60000, .def = "100",
	  .offset = CONFIG_FIELD(store_batch_ms),
	  .help = "milliseconds a partial batch waits for more rows while others are in flight" },
	{ .section = "store", .name = "linger_ms", .type = CFG_INT,
	  .min = 0, .max = 60000, .def = "50",
	  .offset = CONFIG_FIELD(store_linger_ms),
	  .help = "milliseconds a batch waits for more rows when nothing is in flight (0: sent at once; "
	      "at most batch_ms)" },
	{ .section = "store", .name = "linger_rows", .type = CFG_INT,
	  .min = 0, .max = 100000, .def = "100",
	  .offset = CONFIG_FIELD(store_linger_rows),
	  .help = "a batch with this many rows is sent without lingering (0: linger_ms always)" },
	{ .section = "store", .name = "max_inflight", .type = CFG_INT,
	  .min = 1, .max = 64, .def = "4",
	  .offset = CONFIG_FIELD(store_max_inflight),
	  .help = "transactions sent and not yet confirmed (pipelined on one connection)" },
	{ .section = "store", .name = "attrs", .type = CFG_BOOL,
	  .def = "true",
	  .offset = CONFIG_FIELD(store_attrs),
	  .help = "also store each record as JSON in events.attrs (jsonb) for ad-hoc queries" },
	{ .section = "store", .name = "connect_timeout", .type = CFG_INT,
	  .min = 1, .max = 300, .def = "10",
	  .offset = CONFIG_FIELD(store_connect_timeout),
	  .help = "seconds allowed for connecting to the database before retrying" },
	{ .section = "store", .name = "answer_timeout", .type = CFG_INT,
	  .min = 1, .max = 3600, .def = "60",
	  .offset = CONFIG_FIELD(store_answer_timeout),
	  .help = "seconds the database may take to answer a query it was sent before the "
	      "connection is given up and made again (a server that hangs)" },
	{ .section = "store", .name = "sslmode", .type = CFG_ENUM,
	  .choices = sslmode_choices, .choice_values = sslmode_values, .def = "prefer",
	  .offset = CONFIG_FIELD(store_sslmode),
	  .help = "TLS to the server: disable, allow, prefer (TLS if offered, unverified), require, "
	      "verify-ca or verify-full (certificate and host name verified)" },
	{ .section = "store", .name = "sslrootcert", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(store_sslrootcert),
	  .help = "PEM file of the CA(s) that signed the server's certificate; required with verify-ca "
	      "and verify-full" },
	{ .section = "store", .name = "sslcert", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(store_sslcert),
	  .help = "PEM client certificate for servers that ask for one (with sslkey)" },
	{ .section = "store", .name = "sslkey", .type = CFG_PATH,
	  .min = 0, .max = PATH_MAX, .def = "",
	  .offset = CONFIG_FIELD(store_sslkey),
	  .help = "PEM private key of sslcert; a relative name is looked up in $CREDENTIALS_DIRECTORY" },
};

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

#define MAX_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

_Static_assert(sizeof(char *) <= sizeof(long long), "reload swaps fields as bytes");

/* `base` is the struct config, or the struct config_route of an
 * instanced key. */
static void *
field(const void *base, const struct config_key *k)
{
	return (char *)base + k->offset;
}

/* Keys whose field is a char *. */
static bool
is_text(enum config_type t)
{
	return t == CFG_STRING || t == CFG_PATH || t == CFG_SECRET || t == CFG_URL;
}

/* Bytes as written in a config file: the largest exact suffix. */
static const char *
format_size(long long v, char *buf, size_t len)
{
	static const char suffix[] = "KMGT";
	int i = -1;

	while (i < 3 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%lld", v);
	else
		snprintf(buf, len, "%lld%c", v, suffix[i]);
	return buf;
}

static void
list_free(char **list)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		free(list[i]);
	free(list);
}

static void
add_error(struct config_errors *errs, const char *file, int line,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
add_error(struct config_errors *errs, const char *file, int line,
    const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (errs->n == errs->cap) {
		size_t cap = errs->cap ? errs->cap * 2 : 8;
		errs->v = util_realloc(errs->v, cap * sizeof(*errs->v));
		errs->cap = cap;
	}
	struct config_error *e = &errs->v[errs->n++];
	e->file = util_strdup(file);
	e->line = line;
	e->message = util_strdup(msg);
}

void
config_errors_clear(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].file);
		free(errs->v[i].message);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = errs->cap = 0;
}

void
config_errors_print(const struct config_errors *errs, FILE *out)
{
	for (size_t i = 0; i < errs->n; i++) {
		const struct config_error *e = &errs->v[i];
		if (e->line > 0)
			fprintf(out, "%s:%d: %s\n", e->file, e->line, e->message);
		else
			fprintf(out, "%s: %s\n", e->file, e->message);
	}
}

static bool
parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* Sets one key from its text. Returns 0, or -1 with a message in `err`. */
static int
set_value(void *base, const struct config_key *k, const char *v,
    char *err, size_t errlen)
{
	void *p = field(base, k);

	switch (k->type) {
	case CFG_BOOL: {
		bool b;
		if (!parse_bool(v, &b)) {
			snprintf(err, errlen, "%s: '%s' is not a boolean (true or false)",
			    k->name, v);
			return -1;
		}
		*(bool *)p = b;
		return 0;
	}
	case CFG_INT: {
		char *end;
		errno = 0;
		long long n = strtoll(v, &end, 10);
		if (v[0] == '\0' || *end != '\0') {
			snprintf(err, errlen, "%s: '%s' is not an integer", k->name, v);
			return -1;
		}
		if (errno == ERANGE || n < k->min || n > k->max) {
			snprintf(err, errlen, "%s: %s is out of range %lld..%lld",
			    k->name, v, k->min, k->max);
			return -1;
		}
		*(long long *)p = n;
		return 0;
	}
	case CFG_ENUM:
		for (size_t i = 0; k->choices[i] != NULL; i++) {
			if (strcmp(v, k->choices[i]) == 0) {
				*(int *)p = k->choice_values[i];
				return 0;
			}
		}
		{
			char list[256] = "";
			size_t len = 0;
			for (size_t i = 0; k->choices[i] != NULL && len < sizeof(list); i++)
				len += (size_t)snprintf(list + len, sizeof(list) - len,
				    "%s%s", i ? ", " : "", k->choices[i]);
			snprintf(err, errlen, "%s: '%s' is not one of: %s", k->name, v, list);
		}
		return -1;
	case CFG_SIZE: {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		unsigned shift = 0;
		if (v[0] == '\0' || v[0] == '-' || end == v) {
			snprintf(err, errlen, "%s: '%s' is not a size", k->name, v);
			return -1;
		}
		switch (*end) {
		case 'k': case 'K': shift = 10; end++; break;
		case 'm': case 'M': shift = 20; end++; break;
		case 'g': case 'G': shift = 30; end++; break;
		case 't': case 'T': shift = 40; end++; break;
		}
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end != '\0') {
			snprintf(err, errlen, "%s: '%s' is not a size (bytes, or with K, M, G)",
			    k->name, v);
			return -1;
		}
		if (errno == ERANGE || n > (unsigned long long)(LLONG_MAX >> shift) ||
		    (long long)(n << shift) < k->min || (long long)(n << shift) > k->max) {
			char lo[32], hi[32];
			snprintf(err, errlen, "%s: %s is out of range %s..%s", k->name, v,
			    format_size(k->min, lo, sizeof(lo)), format_size(k->max, hi, sizeof(hi)));
			return -1;
		}
		*(long long *)p = (long long)(n << shift);
		return 0;
	}
	case CFG_LIST: {
		size_t len = strlen(v);
		if ((long long)len < k->min) {
			snprintf(err, errlen, "%s: must not be empty", k->name);
			return -1;
		}
		if ((long long)len > k->max) {
			snprintf(err, errlen, "%s: longer than %lld bytes", k->name, k->max);
			return -1;
		}
		char **list = *(char ***)p;
		size_t n = 0;
		while (list != NULL && list[n] != NULL)
			n++;
		char **nl = util_realloc(list, (n + 2) * sizeof(*nl));
		nl[n] = util_strdup(v);
		nl[n + 1] = NULL;
		*(char ***)p = nl;
		return 0;
	}
	case CFG_STRING:
	case CFG_PATH:
	case CFG_SECRET:
	case CFG_URL: {
		size_t len = strlen(v);
		if ((long long)len < k->min) {
			snprintf(err, errlen, "%s: must not be empty", k->name);
			return -1;
		}
		if ((long long)len > k->max) {
			snprintf(err, errlen, "%s: longer than %lld bytes", k->name, k->max);
			return -1;
		}
		char *s = util_strdup(v);
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	}
	snprintf(err, errlen, "%s: unsupported type", k->name);
	return -1;
}

static const struct config_key *
find_key(const char *section, const char *name, size_t *idx)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].instanced)
			continue;
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0) {
			*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

static bool
known_section(const char *section, bool instanced)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].instanced == instanced &&
		    strcmp(config_keys[i].section, section) == 0)
			return true;
	return false;
}

static const struct config_key *
find_instanced_key(const char *type, const char *name, size_t *idx)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].instanced && strcmp(config_keys[i].section, type) == 0 &&
		    strcmp(config_keys[i].name, name) == 0) {
			*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

struct parse;
static void finish_target(struct parse *p, void *inst);
static void finish_viid_device(struct parse *p, void *inst);
static void finish_welfare(struct parse *p, void *inst);
static void finish_route(struct parse *p, void *inst);

/* The kinds of [TYPE NAME] sections and where their arrays live. */
struct instance_type {
	const char *type;
	size_t size;
	size_t array;			/* offset of the array in struct config */
	size_t count;			/* offset of its length */
	/* Checks between its keys, after each key's own (NULL: none). */
	void (*finish)(struct parse *p, void *inst);
};

static const struct instance_type instance_types[] = {
	{ .type = "route", .size = sizeof(struct config_route),
	  .array = CONFIG_FIELD(routes), .count = CONFIG_FIELD(nroutes),
	  .finish = finish_route },
	{ .type = "forward.target", .size = sizeof(struct config_target),
	  .array = CONFIG_FIELD(targets), .count = CONFIG_FIELD(ntargets),
	  .finish = finish_target },
	{ .type = "forward.rule", .size = sizeof(struct config_rule),
	  .array = CONFIG_FIELD(rules), .count = CONFIG_FIELD(nrules) },
	{ .type = "viid.device", .size = sizeof(struct config_viid_device),
	  .array = CONFIG_FIELD(viid_devices), .count = CONFIG_FIELD(nviid_devices),
	  .finish = finish_viid_device },
	{ .type = "device", .size = sizeof(struct config_device),
	  .array = CONFIG_FIELD(devices), .count = CONFIG_FIELD(ndevices) },
	{ .type = "welfare", .size = sizeof(struct config_welfare),
	  .array = CONFIG_FIELD(welfare), .count = CONFIG_FIELD(nwelfare),
	  .finish = finish_welfare },
};
#define NTYPES (sizeof(instance_types) / sizeof(instance_types[0]))

static size_t *
inst_count(const struct config *cfg, const struct instance_type *it)
{
	return (size_t *)((char *)cfg + it->count);
}

static void **
inst_array(const struct config *cfg, const struct instance_type *it)
{
	return (void **)((char *)cfg + it->array);
}

static struct config_instance *
inst_at(const struct config *cfg, const struct instance_type *it, size_t i)
{
	return (struct config_instance *)((char *)*inst_array(cfg, it) + i * it->size);
}

static void
free_strings(void *base, bool instanced, const char *type)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->instanced != instanced)
			continue;
		if (type != NULL && strcmp(k->section, type) != 0)
			continue;
		if (is_text(k->type))
			free(*(char **)field(base, k));
		else if (k->type == CFG_LIST)
			list_free(*(char ***)field(base, k));
	}
}

struct config *
config_defaults(void)
{
	struct config *cfg = util_calloc(1, sizeof(*cfg));
	char err[256];

	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].instanced)
			continue;
		if (set_value(cfg, &config_keys[i], config_keys[i].def, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "bad built-in default: %s\n", err);
			abort();
		}
	}
	cfg->path = util_strdup("<defaults>");
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free_strings(cfg, false, NULL);
	for (size_t t = 0; t < NTYPES; t++) {
		const struct instance_type *it = &instance_types[t];
		size_t n = *inst_count(cfg, it);
		for (size_t i = 0; i < n; i++) {
			struct config_instance *in = inst_at(cfg, it, i);
			free_strings(in, true, it->type);
			free(in->name);
		}
		free(*inst_array(cfg, it));
	}
	free(cfg->path);
	free(cfg);
}

enum section_state { SEC_NONE, SEC_KNOWN, SEC_UNKNOWN, SEC_INSTANCE };

struct parse {
	FILE *f;
	const char *name;
	int line;
	enum section_state sec;
	struct config *cfg;
	struct config_errors *errs;
	size_t nerr_at_start;
	int seen[MAX_KEYS];	/* line where each key was set, 0 if not */
	struct config_instance *inst;	/* the [TYPE NAME] being read */
	const struct instance_type *inst_type;
	int inst_seen[MAX_KEYS];
};

/* Line of `key` in the instance being read, else of its header. */
static int
key_line(const struct parse *p, const char *key)
{
	size_t i;

	if (find_instanced_key(p->inst_type->type, key, &i) != NULL && p->inst_seen[i] != 0)
		return p->inst_seen[i];
	return p->inst->line;
}

/* A key of a target section and its value. */
struct target_key {
	const char *key;
	const char *value;
};

/* Keys that are set although the target does not read them: each an
 * error, `why` saying when they are read. */
static void
refuse_keys(struct parse *p, const struct config_target *t, const char *why,
    const struct target_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i].value[0] != '\0')
			add_error(p->errs, p->name, key_line(p, keys[i].key),
			    "[forward.target %s] %s: %s", t->name, keys[i].key, why);
}

/* The keys only the viid profile reads that say who we are: set with
 * another profile they would be silently ignored, so they are refused.
 * (Its other keys may stand at any value, the shipped example lists them
 * with their defaults.) */
static void
refuse_viid_keys(struct parse *p, const struct config_target *t)
{
	const struct target_key who[] = {
		{ "viid_device_id", t->viid_device_id },
		{ "username", t->username },
		{ "password_file", t->password_file },
	};

	refuse_keys(p, t, "only with profile = viid", who, sizeof(who) / sizeof(who[0]));
	if (t->viid_session == VIID_SESSION_SHARED)
		add_error(p->errs, p->name, key_line(p, "session"),
		    "[forward.target %s] session = shared: only with profile = viid", t->name);
}

/* The string keys only cascade mode reads. */
#define NCASCADE_KEYS 8
static const struct target_key *
cascade_keys(const struct config_target *t)
{
	static struct target_key k[NCASCADE_KEYS];

	k[0] = (struct target_key){ "listen", t->listen };
	k[1] = (struct target_key){ "listen_cert_file", t->listen_cert_file };
	k[2] = (struct target_key){ "listen_key_file", t->listen_key_file };
	k[3] = (struct target_key){ "listen_ca_file", t->listen_ca_file };
	k[4] = (struct target_key){ "listen_username", t->listen_username };
	k[5] = (struct target_key){ "listen_password_file", t->listen_password_file };
	k[6] = (struct target_key){ "platform_id", t->platform_id };
	k[7] = (struct target_key){ "org_code", t->org_code };
	return k;
}

/* "+HH:MM", "-HH:MM", "+HH", "Z" or "UTC" (as [route] timezone). */
static bool
utc_offset_ok(const char *s)
{
	if (strcmp(s, "Z") == 0 || strcmp(s, "UTC") == 0)
		return true;
	if ((s[0] != '+' && s[0] != '-') || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]))
		return false;
	int h = (s[1] - '0') * 10 + (s[2] - '0'), m = 0;
	const char *q = s + 3;
	if (*q == ':')
		q++;
	if (*q != '\0') {
		if (!isdigit((unsigned char)q[0]) || !isdigit((unsigned char)q[1]) || q[2] != '\0')
			return false;
		m = (q[0] - '0') * 10 + (q[1] - '0');
	}
	return h <= 14 && m <= 59;
}

/* "address:port": an IPv4 address or host name, or [IPv6], then a port
 * 1..65535. */
static bool
listen_address_ok(const char *s)
{
	const char *colon = strrchr(s, ':');

	if (colon == NULL || colon == s)
		return false;
	if (s[0] == '[' && colon[-1] != ']')
		return false;
	if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)) != NULL)
		return false;	/* IPv6 without brackets */
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	return colon[1] != '\0' && *end == '\0' && errno == 0 && port >= 1 && port <= 65535;
}

static bool
all_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* What cascade mode needs: a listener the platform reaches with TLS (or
 * plain HTTP when allowed) and Digest credentials. */
static void
finish_cascade_target(struct parse *p, const struct config_target *t)
{
	if (t->listen[0] == '\0')
		add_error(p->errs, p->name, key_line(p, "mode"),
		    "[forward.target %s] mode = cascade needs listen (address:port)", t->name);
	else if (!listen_address_ok(t->listen))
		add_error(p->errs, p->name, key_line(p, "listen"),
		    "[forward.target %s] listen: not address:port (a port 1-65535; IPv6 in [])",
		    t->name);
	if ((t->listen_cert_file[0] == '\0') != (t->listen_key_file[0] == '\0'))
		add_error(p->errs, p->name, key_line(p, t->listen_cert_file[0] ? "listen_cert_file" :
		    "listen_key_file"),
		    "[forward.target %s] listen_cert_file and listen_key_file go together", t->name);
	else if (t->listen_cert_file[0] == '\0' && !t->allow_http)
		add_error(p->errs, p->name, key_line(p, "mode"),
		    "[forward.target %s] mode = cascade needs listen_cert_file and listen_key_file "
		    "(or allow_http = true for a plain HTTP listener)", t->name);
	if (t->listen_ca_file[0] != '\0' && t->listen_cert_file[0] == '\0')
		add_error(p->errs, p->name, key_line(p, "listen_ca_file"),
		    "[forward.target %s] listen_ca_file: client certificates need a TLS listener "
		    "(listen_cert_file)", t->name);
	if (t->listen_username[0] == '\0' || t->listen_password_file[0] == '\0')
		add_error(p->errs, p->name, key_line(p, "mode"),
		    "[forward.target %s] mode = cascade needs listen_username and "
		    "listen_password_file (the platform's Digest credentials)", t->name);
	else if (strpbrk(t->listen_username, "\"\\") != NULL)
		add_error(p->errs, p->name, key_line(p, "listen_username"),
		    "[forward.target %s] listen_username: no '\"' or '\\' allowed", t->name);
	if (t->notify_auth != VIID_AUTH_NONE && t->password_file[0] == '\0')
		add_error(p->errs, p->name, key_line(p, "notify_auth"),
		    "[forward.target %s] notify_auth = %s needs password_file", t->name,
		    t->notify_auth == VIID_AUTH_BASIC ? "basic" : "digest");
	if (t->org_code[0] != '\0' && !all_digits(t->org_code, 12))
		add_error(p->errs, p->name, key_line(p, "org_code"),
		    "[forward.target %s] org_code: 12 digits expected", t->name);
}

/* Whether `key` of the section being read was written in the file. */
static bool
key_set(const struct parse *p, const char *key)
{
	size_t i;

	return find_instanced_key(p->inst_type->type, key, &i) != NULL && p->inst_seen[i] != 0;
}

/* What the viid profile needs of a target, beyond each key's own check
 * (viid_device_id's digits are checked by the forwarder's validator,
 * registered by the glue). */
static void
finish_viid_target(struct parse *p, const struct config_target *t, bool http)
{
	if (t->viid_mode == VIID_MODE_CASCADE && t->viid_session == VIID_SESSION_SHARED)
		add_error(p->errs, p->name, key_line(p, "session"),
		    "[forward.target %s] session = shared: only with mode = upload (a cascade "
		    "target's platform subscribes at one daemon's listener)", t->name);
	if (t->viid_mode == VIID_MODE_CASCADE)
		finish_cascade_target(p, t);
	else
		refuse_keys(p, t, "only with mode = cascade", cascade_keys(t), NCASCADE_KEYS);
	if ((t->picture_username[0] == '\0') != (t->picture_password_file[0] == '\0'))
		add_error(p->errs, p->name, key_line(p, t->picture_username[0] ?
		    "picture_username" : "picture_password_file"),
		    "[forward.target %s] picture_username and picture_password_file go together",
		    t->name);
	if (t->viid_device_id[0] == '\0')
		add_error(p->errs, p->name, t->line,
		    "[forward.target %s] viid_device_id is required with profile = viid", t->name);
	if (key_set(p, "format"))
		add_error(p->errs, p->name, key_line(p, "format"),
		    "[forward.target %s] format: only with profile = gridbridge (viid sends JSON)",
		    t->name);
	if (t->token_file[0] != '\0')
		add_error(p->errs, p->name, key_line(p, "token_file"),
		    "[forward.target %s] token_file: only with profile = gridbridge; viid uses "
		    "username and password_file", t->name);
	if (t->auth == VIID_AUTH_NONE && t->password_file[0] != '\0')
		add_error(p->errs, p->name, key_line(p, "password_file"),
		    "[forward.target %s] password_file: not used with auth = none", t->name);
	else if (t->auth != VIID_AUTH_NONE && t->password_file[0] == '\0')
		add_error(p->errs, p->name, key_line(p, "auth"),
		    "[forward.target %s] auth = %s needs password_file (or auth = none)", t->name,
		    t->auth == VIID_AUTH_BASIC ? "basic" : "digest");
	if (http && t->auth == VIID_AUTH_BASIC)
		add_error(p->errs, p->name, key_line(p, "auth"),
		    "[forward.target %s] auth: basic sends the password in clear over http://; "
		    "use https:// or auth = digest", t->name);
}

static void
finish_target(struct parse *p, void *inst)
{
	struct config_target *t = inst;

	bool http = strncasecmp(t->url, "http://", 7) == 0;
	if (t->url[0] != '\0' && strncasecmp(t->url, "https://", 8) != 0 && !http)
		add_error(p->errs, p->name, key_line(p, "url"),
		    "[forward.target %s] url: must start with https://", t->name);
	else if (http && !t->allow_http)
		add_error(p->errs, p->name, key_line(p, "url"),
		    "[forward.target %s] url: http:// sends events in clear; use https:// "
		    "(or set allow_http = true)", t->name);
	if (http && t->token_file[0] != '\0')
		add_error(p->errs, p->name, key_line(p, "token_file"),
		    "[forward.target %s] token_file: a bearer token is never sent over http://",
		    t->name);
	if ((t->cert_file[0] == '\0') != (t->key_file[0] == '\0'))
		add_error(p->errs, p->name, key_line(p, t->cert_file[0] ? "cert_file" : "key_file"),
		    "[forward.target %s] cert_file and key_file go together", t->name);
	if (t->retry_cap_ms < t->retry_base_ms)
		add_error(p->errs, p->name, key_line(p, "retry_cap_ms"),
		    "[forward.target %s] retry_cap_ms is less than retry_base_ms", t->name);
	if (t->profile == FORWARD_PROFILE_VIID)
		finish_viid_target(p, t, http);
	else
		refuse_viid_keys(p, t);
}

/* A decimal number of degrees within [-max, max]. */
static bool
degrees_ok(const char *s, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	return s[0] != '\0' && *end == '\0' && errno == 0 && v >= -max && v <= max &&
	    strpbrk(s, "xXpPnNiI") == NULL;	/* no hex, nan or inf */
}

static void
finish_viid_device(struct parse *p, void *inst)
{
	const struct config_viid_device *d = inst;

	if ((d->longitude[0] == '\0') != (d->latitude[0] == '\0'))
		add_error(p->errs, p->name, key_line(p, d->longitude[0] ? "longitude" : "latitude"),
		    "[viid.device %s] longitude and latitude go together", d->name);
	if (d->longitude[0] != '\0' && !degrees_ok(d->longitude, 180))
		add_error(p->errs, p->name, key_line(p, "longitude"),
		    "[viid.device %s] longitude: degrees from -180 to 180 expected", d->name);
	if (d->latitude[0] != '\0' && !degrees_ok(d->latitude, 90))
		add_error(p->errs, p->name, key_line(p, "latitude"),
		    "[viid.device %s] latitude: degrees from -90 to 90 expected", d->name);
	if (d->place_code[0] != '\0' && !all_digits(d->place_code, 6))
		add_error(p->errs, p->name, key_line(p, "place_code"),
		    "[viid.device %s] place_code: 6 digits expected", d->name);
}

/* The derived events' routes are not for [route] sections: rules tell
 * them apart by it. */
static void
finish_route(struct parse *p, void *inst)
{
	const struct config_route *r = inst;
	static const char *const reserved[] = { "registry", "welfare", "reports" };

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(r->name, reserved[i]) == 0)
			add_error(p->errs, p->name, r->line, "[route %s]: the name is the derived "
			    "events' route; choose another", r->name);
}

/* "HH:MM" as minutes after midnight, or -1. */
static int
clock_minutes(const char *s, size_t n)
{
	if (n != 5 || s[2] != ':')
		return -1;
	for (size_t i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	return h < 24 && m < 60 ? h * 60 + m : -1;
}

int
config_night_window(const char *s, int *start_min, int *end_min)
{
	const char *dash = strchr(s, '-');

	*start_min = *end_min = -1;
	if (s[0] == '\0')
		return 0;
	if (dash == NULL)
		return -1;
	*start_min = clock_minutes(s, (size_t)(dash - s));
	*end_min = clock_minutes(dash + 1, strlen(dash + 1));
	if (*start_min < 0 || *end_min < 0 || *start_min == *end_min) {
		*start_min = *end_min = -1;
		return -1;
	}
	return 0;
}

static void
finish_welfare(struct parse *p, void *inst)
{
	const struct config_welfare *w = inst;
	int a, b;

	if (config_night_window(w->night_window, &a, &b) != 0)
		add_error(p->errs, p->name, key_line(p, "night_window"),
		    "[welfare %s] night_window: HH:MM-HH:MM expected (two different times)", w->name);
	if (w->door_sensors[0] != '\0') {
		char **v = util_split_list(w->door_sensors);
		if (v == NULL || v[0] == NULL)
			add_error(p->errs, p->name, key_line(p, "door_sensors"),
			    "[welfare %s] door_sensors: at least one device id", w->name);
		util_strv_free(v);
	}
}

/* Checks registered by the code that owns a key's meaning (is "hikvision"
 * a decoder?), run in registration order when its section is finished. */
#define MAX_CHECKS 32
static struct {
	const struct config_key *key;
	config_check_fn *fn;
} checks[MAX_CHECKS];
static size_t nchecks;

void
config_register_check(const char *section, const char *key, config_check_fn *fn)
{
	size_t idx;
	const struct config_key *k = find_instanced_key(section, key, &idx);

	if (k == NULL || !is_text(k->type) || nchecks == MAX_CHECKS)
		abort();	/* a mistake in the program, not in the file */
	for (size_t i = 0; i < nchecks; i++)
		if (checks[i].key == k && checks[i].fn == fn)
			return;	/* registered already */
	checks[nchecks].key = k;
	checks[nchecks].fn = fn;
	nchecks++;
}

struct check_ctx {
	struct parse *p;
	const char *key;
};

/* A registered check found a problem: `[TYPE NAME] key: why`, at the key. */
static void
check_failed(void *ctx, const char *why)
{
	struct check_ctx *c = ctx;

	add_error(c->p->errs, c->p->name, key_line(c->p, c->key), "[%s %s] %s: %s",
	    c->p->inst_type->type, c->p->inst->name, c->key, why);
}

/* A finished [TYPE NAME] section, key by key in table order: required
 * keys first, then what the registered checks say of the value. */
static void
check_instance(struct parse *p)
{
	const char *type = p->inst_type->type;

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		if (!k->instanced || strcmp(k->section, type) != 0 || !is_text(k->type))
			continue;
		const char *v = *(char **)field(p->inst, k);
		if (k->required && v[0] == '\0') {
			add_error(p->errs, p->name, p->inst->line, "[%s %s] %s is required", type,
			    p->inst->name, k->name);
			continue;
		}
		struct check_ctx c = { .p = p, .key = k->name };
		for (size_t j = 0; j < nchecks; j++)
			if (checks[j].key == k)
				checks[j].fn(v, check_failed, &c);
	}
}

static const struct instance_type *
find_instance_type(const char *type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (strcmp(instance_types[i].type, type) == 0)
			return &instance_types[i];
	return NULL;
}

static void
finish_instance(struct parse *p)
{
	if (p->inst == NULL)
		return;
	check_instance(p);
	if (p->inst_type->finish != NULL)
		p->inst_type->finish(p, p->inst);
	p->inst = NULL;
}

/* Starts a [TYPE NAME] section. */
static void
start_instance(struct parse *p, const char *type, const char *name)
{
	const struct instance_type *it = find_instance_type(type);
	char err[256];

	if (name[0] == '\0') {
		add_error(p->errs, p->name, p->line, "[%s] needs a name: [%s NAME]", type, type);
		p->sec = SEC_UNKNOWN;
		return;
	}
	size_t *n = inst_count(p->cfg, it);
	for (size_t i = 0; i < *n; i++) {
		const struct config_instance *in = inst_at(p->cfg, it, i);
		if (strcmp(in->name, name) == 0) {
			add_error(p->errs, p->name, p->line, "duplicate [%s %s] (first on line %d)",
			    type, name, in->line);
			p->sec = SEC_UNKNOWN;
			return;
		}
	}
	void **arr = inst_array(p->cfg, it);
	char *v = util_realloc(*arr, (*n + 1) * it->size);
	*arr = v;
	struct config_instance *in = (struct config_instance *)(v + *n * it->size);
	(*n)++;
	memset(in, 0, it->size);
	in->name = util_strdup(name);
	in->line = p->line;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->instanced && strcmp(k->section, type) == 0 &&
		    set_value(in, k, k->def, err, sizeof(err)) != 0)
			abort();
	}
	p->inst = in;
	p->inst_type = it;
	memset(p->inst_seen, 0, sizeof(p->inst_seen));
	p->sec = SEC_INSTANCE;
}

static char *
trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
	    s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* inih calls the reader once per line and handles that line before reading
 * the next, so p->line is the line the handler is looking at. The reader
 * also does what inih does not report precisely: section names, lines
 * without `=`, overlong lines. Leading blanks are removed so no line is
 * ever taken as the continuation of the previous value. */
static char *
reader(char *str, int num, void *stream)
{
	struct parse *p = stream;

	if (fgets(str, num, p->f) == NULL)
		return NULL;
	p->line++;

	size_t len = strlen(str);
	if (len > 0 && str[len - 1] != '\n' && !feof(p->f)) {
		int c;
		while ((c = fgetc(p->f)) != EOF && c != '\n')
			;
		add_error(p->errs, p->name, p->line,
		    "line longer than %d characters", num - 2);
		strcpy(str, "\n");
		return str;
	}

	char *s = str;
	while (*s == ' ' || *s == '\t')
		s++;
	if (s != str)
		memmove(str, s, strlen(s) + 1);

	char copy[512];
	snprintf(copy, sizeof(copy), "%s", str);
	char *t = trim(copy);
	if (t[0] == '\0' || t[0] == ';' || t[0] == '#')
		return str;
	if (t[0] == '[') {
		char *end = strchr(t, ']');
		if (end == NULL) {
			add_error(p->errs, p->name, p->line, "expected ']' after section name");
			p->sec = SEC_UNKNOWN;
			strcpy(str, "\n");
			return str;
		}
		*end = '\0';
		char *sec = trim(t + 1);
		finish_instance(p);
		char *space = strpbrk(sec, " \t");
		if (space != NULL) {
			*space = '\0';
			char *inst = trim(space + 1);
			if (known_section(sec, true)) {
				start_instance(p, sec, inst);
			} else {
				add_error(p->errs, p->name, p->line, "unknown section [%s %s]", sec, inst);
				p->sec = SEC_UNKNOWN;
			}
		} else if (known_section(sec, false)) {
			p->sec = SEC_KNOWN;
		} else if (known_section(sec, true)) {
			start_instance(p, sec, "");
		} else {
			add_error(p->errs, p->name, p->line, "unknown section [%s]", sec);
			p->sec = SEC_UNKNOWN;
		}
		return str;
	}
	if (strchr(t, '=') == NULL && strchr(t, ':') == NULL) {
		add_error(p->errs, p->name, p->line, "expected 'key = value'");
		strcpy(str, "\n");
	}
	return str;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct config_key *k;
	size_t idx;
	char err[512];

	if (p->sec == SEC_UNKNOWN)
		return 1;	/* the section was reported already */
	if (p->sec == SEC_NONE) {
		add_error(p->errs, p->name, p->line, "key '%s' outside of any section", name);
		return 1;
	}
	if (p->sec == SEC_INSTANCE) {
		k = find_instanced_key(p->inst_type->type, name, &idx);
		if (k == NULL) {
			add_error(p->errs, p->name, p->line, "unknown key '%s' in [%s]", name, section);
			return 1;
		}
		if (p->inst_seen[idx] != 0) {
			add_error(p->errs, p->name, p->line,
			    "duplicate key '%s' in [%s] (first set on line %d)", name, section,
			    p->inst_seen[idx]);
			return 1;
		}
		p->inst_seen[idx] = p->line;
		if (set_value(p->inst, k, value, err, sizeof(err)) != 0)
			add_error(p->errs, p->name, p->line, "%s", err);
		return 1;
	}
	k = find_key(section, name, &idx);
	if (k == NULL) {
		add_error(p->errs, p->name, p->line, "unknown key '%s' in [%s]", name, section);
		return 1;
	}
	if (k->type == CFG_LIST) {
		/* The file's values replace the default list. */
		if (p->seen[idx] == 0) {
			list_free(*(char ***)field(p->cfg, k));
			*(char ***)field(p->cfg, k) = NULL;
		}
	} else if (p->seen[idx] != 0) {
		add_error(p->errs, p->name, p->line,
		    "duplicate key '%s' in [%s] (first set on line %d)", name, section,
		    p->seen[idx]);
		return 1;
	}
	if (p->seen[idx] == 0)
		p->seen[idx] = p->line;
	if (set_value(p->cfg, k, value, err, sizeof(err)) != 0)
		add_error(p->errs, p->name, p->line, "%s", err);
	return 1;
}

static void
exclusive(struct parse *p, const char *section, const char *a, const char *b)
{
	size_t ia, ib;

	if (find_key(section, a, &ia) == NULL || find_key(section, b, &ib) == NULL)
		abort();
	const char *va = *(char **)field(p->cfg, &config_keys[ia]);
	const char *vb = *(char **)field(p->cfg, &config_keys[ib]);
	if (va[0] != '\0' && vb[0] != '\0')
		add_error(p->errs, p->name, p->seen[ib],
		    "[%s] %s and %s are mutually exclusive", section, a, b);
}

/* Checks that involve more than one key. */
static void
validate(struct parse *p)
{
	exclusive(p, "mqtt", "password", "password_file");
	if (p->cfg->mqtt_tls && p->cfg->mqtt_ca_file[0] == '\0') {
		size_t i;
		find_key("mqtt", "tls", &i);
		add_error(p->errs, p->name, p->seen[i], "[mqtt] tls needs ca_file");
	}
	if ((p->cfg->mqtt_cert_file[0] == '\0') != (p->cfg->mqtt_key_file[0] == '\0')) {
		size_t i;
		find_key("mqtt", p->cfg->mqtt_cert_file[0] ? "cert_file" : "key_file", &i);
		add_error(p->errs, p->name, p->seen[i],
		    "[mqtt] cert_file and key_file go together");
	}
	if (p->cfg->mqtt_cert_file[0] != '\0' && !p->cfg->mqtt_tls) {
		size_t i;
		find_key("mqtt", "cert_file", &i);
		add_error(p->errs, p->name, p->seen[i], "[mqtt] cert_file needs tls = true");
	}
	exclusive(p, "mqtt", "share_group", "shared_group");
	for (int g = 0; g < 2; g++) {
		const char *name = g == 0 ? "share_group" : "shared_group";
		const char *v = g == 0 ? p->cfg->mqtt_share_group : p->cfg->mqtt_shared_group;
		size_t i;
		find_key("mqtt", name, &i);
		if (v[0] != '\0' && strpbrk(v, "/+#") != NULL)
			add_error(p->errs, p->name, p->seen[i],
			    "[mqtt] %s: a group name has no '/', '+' or '#'", name);
	}
	{
		char why[160];
		size_t i;
		find_key("mqtt", "client_id", &i);
		if (config_client_id_check(p->cfg->mqtt_client_id, why, sizeof(why)) != 0)
			add_error(p->errs, p->name, p->seen[i], "[mqtt] client_id: %s", why);
	}
	exclusive(p, "store", "password", "password_file");
	if (p->cfg->store_sslmode >= SSLMODE_VERIFY_CA && p->cfg->store_sslrootcert[0] == '\0') {
		size_t i;
		find_key("store", "sslmode", &i);
		add_error(p->errs, p->name, p->seen[i], "[store] sslmode = %s needs sslrootcert",
		    sslmode_choices[p->cfg->store_sslmode]);
	}
	if ((p->cfg->store_sslcert[0] == '\0') != (p->cfg->store_sslkey[0] == '\0')) {
		size_t i;
		find_key("store", p->cfg->store_sslcert[0] ? "sslcert" : "sslkey", &i);
		add_error(p->errs, p->name, p->seen[i], "[store] sslcert and sslkey go together");
	}
	for (size_t i = 0; i < p->cfg->nrules; i++) {
		const struct config_rule *r = &p->cfg->rules[i];
		size_t t = 0;
		while (t < p->cfg->ntargets && strcmp(p->cfg->targets[t].name, r->target) != 0)
			t++;
		if (r->target[0] != '\0' && t == p->cfg->ntargets)
			add_error(p->errs, p->name, r->line,
			    "[forward.rule %s] target: no [forward.target %s]", r->name, r->target);
	}
	if (strcmp(p->cfg->admin_listen, "none") != 0 && !listen_address_ok(p->cfg->admin_listen)) {
		size_t i;
		find_key("admin", "listen", &i);
		add_error(p->errs, p->name, p->seen[i],
		    "[admin] listen: not address:port (a port 1-65535; IPv6 in []) nor none");
	}
	if (!utc_offset_ok(p->cfg->admin_status_timezone)) {
		size_t i;
		find_key("admin", "status_timezone", &i);
		add_error(p->errs, p->name, p->seen[i],
		    "[admin] status_timezone: not +HH:MM (or -HH:MM, Z, UTC), at most 14 hours");
	}
	if (p->cfg->state_dir[0] != '/') {
		size_t i;
		find_key("daemon", "state_dir", &i);
		add_error(p->errs, p->name, p->seen[i], "state_dir: must be an absolute path");
	}
}

struct config *
config_load_stream(FILE *f, const char *name, struct config_errors *errs)
{
	struct parse p = { .f = f, .name = name, .sec = SEC_NONE, .errs = errs,
		.nerr_at_start = errs->n };

	p.cfg = config_defaults();
	free(p.cfg->path);
	p.cfg->path = util_strdup(name);

	int rc = ini_parse_stream(reader, &p, handler, &p);
	finish_instance(&p);
	if (rc > 0) {
		/* inih saw a syntax error the reader did not explain. */
		bool explained = false;
		for (size_t i = p.nerr_at_start; i < errs->n; i++)
			if (errs->v[i].line == rc)
				explained = true;
		if (!explained)
			add_error(errs, name, rc, "syntax error");
	} else if (rc < 0) {
		add_error(errs, name, 0, "cannot parse (out of memory)");
	}
	if (ferror(f))
		add_error(errs, name, 0, "read error");
	validate(&p);

	if (errs->n > p.nerr_at_start) {
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

struct config *
config_load(const char *path, struct config_errors *errs)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		add_error(errs, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	struct config *cfg = config_load_stream(f, path, errs);
	fclose(f);
	return cfg;
}

const char *
config_share_group(const struct config *cfg)
{
	return cfg->mqtt_share_group[0] != '\0' ? cfg->mqtt_share_group :
	    cfg->mqtt_shared_group;
}

char **
config_subscriptions(const struct config *cfg)
{
	const char *group = config_share_group(cfg);
	size_t n = 0;

	while (cfg->mqtt_subscribe != NULL && cfg->mqtt_subscribe[n] != NULL)
		n++;
	char **out = util_calloc(n + 1, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const char *f = cfg->mqtt_subscribe[i];
		if (group[0] == '\0') {
			out[i] = util_strdup(f);
			continue;
		}
		size_t len = strlen("$share/") + strlen(group) + 1 + strlen(f) + 1;
		out[i] = util_malloc(len);
		snprintf(out[i], len, "$share/%s/%s", group, f);
	}
	return out;
}

void
config_subscriptions_free(char **list)
{
	list_free(list);
}

/* Walks a client_id template: the bytes it stands for once expanded,
 * written to out when it is not NULL. -1 with why on a bad escape or a
 * name that is needed but not known (NULL). */
static int
client_id_walk(const char *tmpl, const char *host, const char *instance, bool need_names,
    char *out, size_t outlen, size_t *len, char *why, size_t whylen)
{
	size_t n = 0;

	for (const char *p = tmpl; *p != '\0'; p++) {
		const char *add = p;
		size_t addlen = 1;
		if (*p == '%') {
			p++;
			if (*p == '%') {
				add = "%";
			} else if (*p == 'h' || *p == 'i') {
				const char *v = *p == 'h' ? host : instance;
				if (v == NULL && need_names) {
					snprintf(why, whylen, *p == 'h' ? "%%h: the host name is not "
					    "known" : "%%i needs an instance name: start gridbridged "
					    "with -i NAME");
					return -1;
				}
				add = v != NULL ? v : "x";	/* at least one byte */
				addlen = strlen(add);
			} else {
				snprintf(why, whylen, *p == '\0' ? "ends with a lone '%%' (%%%% "
				    "for a %%)" : "unknown '%%%c': only %%h, %%i and %%%% are expanded",
				    *p);
				return -1;
			}
		}
		if (out != NULL && n + addlen < outlen)
			memcpy(out + n, add, addlen);
		n += addlen;
	}
	if (out != NULL && outlen > 0)
		out[n < outlen ? n : outlen - 1] = '\0';
	*len = n;
	return 0;
}

int
config_client_id_check(const char *tmpl, char *why, size_t whylen)
{
	size_t len;

	if (client_id_walk(tmpl, NULL, NULL, false, NULL, 0, &len, why, whylen) != 0)
		return -1;
	if (len > CONFIG_CLIENT_ID_MAX) {
		snprintf(why, whylen, "longer than %d bytes even with one-character names",
		    CONFIG_CLIENT_ID_MAX);
		return -1;
	}
	return 0;
}

int
config_client_id_expand(const char *tmpl, const char *host, const char *instance,
    char *out, size_t outlen, char *why, size_t whylen)
{
	size_t len;

	if (outlen > 0)
		out[0] = '\0';
	if (client_id_walk(tmpl, host, instance, true, out, outlen, &len, why, whylen) != 0)
		return -1;
	if (len == 0) {
		snprintf(why, whylen, "empty once expanded");
		return -1;
	}
	if (len > CONFIG_CLIENT_ID_MAX || len >= outlen) {
		snprintf(why, whylen, "%zu bytes once expanded, more than the %d a client id may "
		    "have", len, CONFIG_CLIENT_ID_MAX);
		out[0] = '\0';
		return -1;
	}
	return 0;
}

int
config_instance_check(const char *name, char *why, size_t whylen)
{
	size_t n = strlen(name);

	if (n == 0 || n > CONFIG_INSTANCE_MAX) {
		snprintf(why, whylen, "an instance name has 1 to %d characters", CONFIG_INSTANCE_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
			snprintf(why, whylen, "an instance name has only letters, digits, '.', '_' "
			    "and '-'");
			return -1;
		}
	}
	return 0;
}

/* `v` with the password of its user info replaced: the part between the
 * first ':' and the last '@' of the authority (what follows "://", or the
 * whole start of a proxy written user:password@host:port, up to the first
 * '/', '?' or '#'). A user name alone is kept. */
static const char *
redact_url(const char *v, char *buf, size_t buflen)
{
	const char *auth = strstr(v, "://");
	const char *at = NULL;

	auth = auth != NULL ? auth + 3 : v;
	for (const char *p = auth; *p != '\0' && strchr("/?#", *p) == NULL; p++)
		if (*p == '@')
			at = p;
	const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon == NULL)
		return v;
	int n = snprintf(buf, buflen, "%.*s<redacted>%s", (int)(colon + 1 - v), v, at);
	if (n < 0 || (size_t)n >= buflen)
		return "<redacted>";
	return buf;
}

static const char *
value_str(const void *base, const struct config_key *k, char *buf, size_t buflen)
{
	const void *p = field(base, k);

	switch (k->type) {
	case CFG_BOOL:
		return *(const bool *)p ? "true" : "false";
	case CFG_INT:
		snprintf(buf, buflen, "%lld", *(const long long *)p);
		return buf;
	case CFG_SIZE:
		return format_size(*(const long long *)p, buf, buflen);
	case CFG_LIST: {
		char *const *list = *(char **const *)p;
		return list != NULL && list[0] != NULL ? list[0] : "";
	}
	case CFG_ENUM:
		for (size_t i = 0; k->choices[i] != NULL; i++)
			if (k->choice_values[i] == *(const int *)p)
				return k->choices[i];
		return "?";
	case CFG_SECRET:
		return (*(char *const *)p)[0] != '\0' ? "<redacted>" : "";
	case CFG_URL:
		return redact_url(*(char *const *)p, buf, buflen);
	case CFG_STRING:
	case CFG_PATH:
		return *(char *const *)p;
	}
	return "?";
}

const char *
config_enum_name(const char *section, const char *name, int value)
{
	size_t i;
	const struct config_key *k = find_key(section, name, &i);

	for (size_t c = 0; k != NULL && k->type == CFG_ENUM && k->choices[c] != NULL; c++)
		if (k->choice_values[c] == value)
			return k->choices[c];
	return NULL;
}

const char *
config_value_str(const struct config *cfg, const struct config_key *k,
    char *buf, size_t buflen)
{
	return value_str(cfg, k, buf, buflen);
}

void
config_print(const struct config *cfg, FILE *out)
{
	const char *section = NULL;
	char buf[4200];		/* numbers, and a redacted URL */

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->instanced)
			continue;
		if (section == NULL || strcmp(section, k->section) != 0) {
			fprintf(out, "%s[%s]\n", section ? "\n" : "", k->section);
			section = k->section;
		}
		if (k->type == CFG_LIST) {
			char *const *list = *(char **const *)field(cfg, k);
			for (size_t j = 0; list != NULL && list[j] != NULL; j++)
				fprintf(out, "%s = %s\n", k->name, list[j]);
			continue;
		}
		const char *v = config_value_str(cfg, k, buf, sizeof(buf));
		fprintf(out, "%s =%s%s\n", k->name, v[0] ? " " : "", v);
	}
	for (size_t t = 0; t < NTYPES; t++) {
		const struct instance_type *it = &instance_types[t];
		for (size_t r = 0; r < *inst_count(cfg, it); r++) {
			const struct config_instance *in = inst_at(cfg, it, r);
			fprintf(out, "\n[%s %s]\n", it->type, in->name);
			for (size_t i = 0; i < config_nkeys; i++) {
				const struct config_key *k = &config_keys[i];
				if (!k->instanced || strcmp(k->section, it->type) != 0)
					continue;
				const char *v = value_str(in, k, buf, sizeof(buf));
				fprintf(out, "%s =%s%s\n", k->name, v[0] ? " " : "", v);
			}
		}
	}
}

static bool
same_value(const void *a, const void *b, const struct config_key *k)
{
	const void *pa = field(a, k), *pb = field(b, k);

	switch (k->type) {
	case CFG_BOOL:
		return *(const bool *)pa == *(const bool *)pb;
	case CFG_INT:
	case CFG_SIZE:
		return *(const long long *)pa == *(const long long *)pb;
	case CFG_LIST: {
		char *const *la = *(char **const *)pa, *const *lb = *(char **const *)pb;
		size_t i = 0;
		for (; la[i] != NULL && lb[i] != NULL; i++)
			if (strcmp(la[i], lb[i]) != 0)
				return false;
		return la[i] == NULL && lb[i] == NULL;
	}
	case CFG_ENUM:
		return *(const int *)pa == *(const int *)pb;
	case CFG_STRING:
	case CFG_PATH:
	case CFG_SECRET:
	case CFG_URL:
		return strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
	}
	return false;
}

/* Whether the [TYPE NAME] sections of one type are the same in both. */
static bool
instances_equal(const struct config *a, const struct config *b, const struct instance_type *it)
{
	if (*inst_count(a, it) != *inst_count(b, it))
		return false;
	for (size_t r = 0; r < *inst_count(a, it); r++) {
		const struct config_instance *ia = inst_at(a, it, r), *ib = inst_at(b, it, r);
		if (strcmp(ia->name, ib->name) != 0)
			return false;
		for (size_t i = 0; i < config_nkeys; i++)
			if (config_keys[i].instanced && strcmp(config_keys[i].section, it->type) == 0 &&
			    !same_value(ia, ib, &config_keys[i]))
				return false;
	}
	return true;
}

void
config_apply_reload(struct config *cur, struct config *next,
    void (*changed)(const struct config_key *k, bool applied, void *ctx), void *ctx)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->instanced) {
			/* Sections are not reloaded; reported once per type, by
			 * the type's first key. */
			const struct instance_type *it = find_instance_type(k->section);
			if (changed != NULL && (i == 0 || strcmp(config_keys[i - 1].section,
			    k->section) != 0) && !instances_equal(cur, next, it))
				changed(k, false, ctx);
			continue;
		}
		if (same_value(cur, next, k))
			continue;
		if (changed != NULL)
			changed(k, k->reloadable, ctx);
		if (!k->reloadable)
			continue;
		/* Swap the raw field bytes: strings change owner, nothing leaks. */
		size_t sz = k->type == CFG_BOOL ? sizeof(bool) :
		    k->type == CFG_INT || k->type == CFG_SIZE ? sizeof(long long) :
		    k->type == CFG_ENUM ? sizeof(int) : sizeof(char *);
		unsigned char tmp[sizeof(long long)];
		memcpy(tmp, field(cur, k), sz);
		memcpy(field(cur, k), field(next, k), sz);
		memcpy(field(next, k), tmp, sz);
	}
}
