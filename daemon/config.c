/* config.c — INI configuration driven by one table of keys. */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decode.h"
#include "log.h"
#include "route.h"
#include "rules.h"

#define F(field) offsetof(struct config, field)
#define R(field) offsetof(struct config_route, field)
#define T(field) offsetof(struct config_target, field)
#define U(field) offsetof(struct config_rule, field)

static const char *const level_choices[] = {
	"debug", "info", "notice", "warning", "warn", "error", NULL
};
static const int level_values[] = {
	LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN, LOG_LVL_WARN,
	LOG_LVL_ERROR
};

static const char *const format_choices[] = { "protobuf", "json", NULL };
static const int format_values[] = { FORWARD_PROTOBUF, FORWARD_JSON };

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
	{ "daemon", "log_level", CFG_ENUM, 0, 0, level_choices, level_values,
	  "info", true, F(log_level),
	  "least important level logged: debug, info, notice, warning or error", false },
	{ "daemon", "log_rate_burst", CFG_INT, 0, 1000000, NULL, NULL,
	  "10", true, F(log_rate_burst),
	  "lines of one kind logged per interval before repeats are counted, not printed (0: no limit)", false },
	{ "daemon", "log_rate_interval", CFG_INT, 1, 3600, NULL, NULL,
	  "10", true, F(log_rate_interval),
	  "seconds of the rate-limit window; the next line reports suppressed=N", false },
	{ "daemon", "state_dir", CFG_PATH, 1, PATH_MAX, NULL, NULL,
	  "/var/lib/gridbridge", false, F(state_dir),
	  "directory for the journal and other state; created if missing", false },

	{ "mqtt", "host", CFG_STRING, 1, 255, NULL, NULL,
	  "127.0.0.1", false, F(mqtt_host),
	  "broker host name or address", false },
	{ "mqtt", "port", CFG_INT, 1, 65535, NULL, NULL,
	  "1883", false, F(mqtt_port),
	  "broker TCP port", false },
	{ "mqtt", "client_id", CFG_STRING, 1, 65535, NULL, NULL,
	  "gridbridge", false, F(mqtt_client_id),
	  "MQTT client id; fixed, so the broker keeps our persistent session", false },
	{ "mqtt", "keepalive", CFG_INT, 5, 3600, NULL, NULL,
	  "60", false, F(mqtt_keepalive),
	  "MQTT keepalive in seconds", false },
	{ "mqtt", "username", CFG_STRING, 0, 65535, NULL, NULL,
	  "", false, F(mqtt_username),
	  "user name for the broker; empty: connect anonymously", false },
	{ "mqtt", "password", CFG_SECRET, 0, 65535, NULL, NULL,
	  "", false, F(mqtt_password),
	  "password for the broker; prefer password_file", false },
	{ "mqtt", "password_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(mqtt_password_file),
	  "file holding the broker password; a relative name is looked up in $CREDENTIALS_DIRECTORY", false },

	{ "mqtt", "protocol", CFG_ENUM, 0, 0, protocol_choices, protocol_values,
	  "3.1.1", false, F(mqtt_protocol),
	  "MQTT protocol version: 3.1.1 or 5", false },
	{ "mqtt", "session_expiry", CFG_INT, 1, 4294967295LL, NULL, NULL,
	  "4294967295", false, F(mqtt_session_expiry),
	  "MQTT 5: seconds the broker keeps our session while we are away (4294967295: never expires)", false },
	{ "mqtt", "receive_maximum", CFG_INT, 1, 65535, NULL, NULL,
	  "20", false, F(mqtt_receive_maximum),
	  "MQTT 5: QoS 1 messages the broker may send before our acknowledgements (our in-flight window)", false },
	{ "mqtt", "subscribe", CFG_LIST, 1, 65535, NULL, NULL,
	  "#", false, F(mqtt_subscribe),
	  "topic filter subscribed with QoS 1; repeat the key for more filters", false },
	{ "mqtt", "shared_group", CFG_STRING, 0, 255, NULL, NULL,
	  "", false, F(mqtt_shared_group),
	  "when set, subscribe as $share/<group>/<filter> so several daemons share the load", false },
	{ "mqtt", "max_message_size", CFG_SIZE, 1024, 256LL << 20, NULL, NULL,
	  "1M", false, F(mqtt_max_message_size),
	  "larger messages are journaled as oversize (topic and length only) and quarantined", false },
	{ "mqtt", "tls", CFG_BOOL, 0, 0, NULL, NULL,
	  "false", false, F(mqtt_tls),
	  "connect with TLS (1.2 or newer), verifying the broker's certificate and host name", false },
	{ "mqtt", "ca_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(mqtt_ca_file),
	  "PEM file of the CA(s) that signed the broker's certificate; required with tls", false },
	{ "mqtt", "cert_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(mqtt_cert_file),
	  "PEM client certificate for brokers that require one (with key_file)", false },
	{ "mqtt", "key_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(mqtt_key_file),
	  "PEM private key of cert_file; a relative name is looked up in $CREDENTIALS_DIRECTORY", false },

	{ "journal", "segment_size", CFG_SIZE, 64LL << 10, 1LL << 30, NULL, NULL,
	  "64M", false, F(journal_segment_size),
	  "size at which a journal segment file is closed and a new one started", false },
	{ "journal", "disk_cap", CFG_SIZE, 64LL << 10, 1LL << 50, NULL, NULL,
	  "8G", true, F(journal_disk_cap),
	  "journal size at which ingest pauses (never drops) until space frees", false },
	{ "journal", "sync_batch", CFG_INT, 1, 100000, NULL, NULL,
	  "1000", false, F(journal_sync_batch),
	  "records appended before an fdatasync even if the broker is still sending", false },

	{ "decode", "max_clock_skew", CFG_INT, 1, 31536000, NULL, NULL,
	  "300", true, F(decode_max_clock_skew),
	  "seconds a device's clock may differ from ours before its records are flagged clock_skewed", false },
	{ "decode", "repeat_window", CFG_INT, 0, 604800, NULL, NULL,
	  "600", true, F(decode_repeat_window),
	  "seconds within which a report with neither device time nor serial, identical to the "
	  "previous one on its topic, is the same event (0: only retained copies are)", false },
	{ "decode", "repeat_topics", CFG_INT, 1, 10000000, NULL, NULL,
	  "100000", false, F(decode_repeat_topics),
	  "topics whose last such report is remembered (the least recently reported is "
	  "forgotten first)", false },

	{ "route", "pattern", CFG_STRING, 0, 65535, NULL, NULL,
	  "", false, R(pattern),
	  "topic pattern: {name} captures a level, {name...} one or more, + matches one; required",
	  true },
	{ "route", "decoder", CFG_STRING, 0, 64, NULL, NULL,
	  "", false, R(decoder),
	  "payload format: access, hikvision, dahua, camera_alarm, peephole, gateway, z2m_device, "
	  "z2m_availability, z2m_bridge, shelly_sensor, shelly_online or tasmota_lwt; required",
	  true },
	{ "route", "class", CFG_STRING, 0, 64, NULL, NULL,
	  "", false, R(device_class),
	  "device class: access_gate, vehicle_barrier, camera, door_sensor, peephole or gateway; required",
	  true },
	{ "route", "community", CFG_STRING, 0, 255, NULL, NULL,
	  "", false, R(community),
	  "community of the devices when the pattern has no {community}",
	  true },
	{ "route", "timezone", CFG_STRING, 1, 16, NULL, NULL,
	  "+08:00", false, R(timezone),
	  "zone of device times written without an offset, as +HH:MM",
	  true },
	{ "route", "utc_is_local", CFG_BOOL, 0, 0, NULL, NULL,
	  "true", false, R(utc_is_local),
	  "Dahua: the UTC field holds local wall-clock time (RealUTC is preferred when present)",
	  true },

	{ "forward.target", "url", CFG_URL, 0, 4096, NULL, NULL,
	  "", false, T(url),
	  "https:// URL the event batches are POSTed to; required", true },
	{ "forward.target", "allow_http", CFG_BOOL, 0, 0, NULL, NULL,
	  "false", false, T(allow_http),
	  "accept an http:// url: events go out in clear (never with a token_file)", true },
	{ "forward.target", "format", CFG_ENUM, 0, 0, format_choices, format_values,
	  "protobuf", false, T(format),
	  "body: protobuf (an EventBatch, application/x-protobuf) or json (its proto3 JSON mapping)",
	  true },
	{ "forward.target", "ca_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, T(ca_file),
	  "CA certificates the platform's certificate is verified against; empty: the system's", true },
	{ "forward.target", "cert_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, T(cert_file),
	  "our client certificate (PEM) for mutual TLS; goes with key_file", true },
	{ "forward.target", "key_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, T(key_file),
	  "private key of cert_file (PEM); a relative name is looked up in $CREDENTIALS_DIRECTORY", true },
	{ "forward.target", "token_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, T(token_file),
	  "file holding a bearer token sent as Authorization; a relative name is looked up in "
	  "$CREDENTIALS_DIRECTORY; empty: none", true },
	{ "forward.target", "proxy", CFG_URL, 0, 4096, NULL, NULL,
	  "", false, T(proxy),
	  "proxy URL (http://host:port); empty: none (proxy environment variables are ignored)", true },
	{ "forward.target", "connect_timeout", CFG_INT, 1, 300, NULL, NULL,
	  "10", false, T(connect_timeout),
	  "seconds allowed for the TCP and TLS handshake", true },
	{ "forward.target", "timeout", CFG_INT, 1, 3600, NULL, NULL,
	  "30", false, T(timeout),
	  "seconds allowed for a whole request; then it is retried", true },
	{ "forward.target", "batch_rows", CFG_INT, 1, 10000, NULL, NULL,
	  "100", false, T(batch_rows),
	  "events per request at most", true },
	{ "forward.target", "batch_bytes", CFG_SIZE, 1024, 64LL << 20, NULL, NULL,
	  "1M", false, T(batch_bytes),
	  "bytes of records per request at most (a single larger record is sent alone)", true },
	{ "forward.target", "max_inflight", CFG_INT, 1, 64, NULL, NULL,
	  "4", false, T(max_inflight),
	  "requests in flight at once in each lane (alarm, routine)", true },
	{ "forward.target", "retry_base_ms", CFG_INT, 1, 3600000, NULL, NULL,
	  "1000", false, T(retry_base_ms),
	  "first retry waits up to this long; doubles per failure (full jitter)", true },
	{ "forward.target", "retry_cap_ms", CFG_INT, 1, 86400000, NULL, NULL,
	  "60000", false, T(retry_cap_ms),
	  "longest wait between retries (a longer Retry-After is honoured, up to retry_after_max)",
	  true },
	{ "forward.target", "max_attempts", CFG_INT, 0, 1000000, NULL, NULL,
	  "0", false, T(max_attempts),
	  "requests tried before the rows are marked failed (0: retry for ever)", true },
	{ "forward.target", "max_age", CFG_INT, 0, 315360000, NULL, NULL,
	  "0", false, T(max_age),
	  "seconds after its creation a row that fails again is marked failed (0: no limit)", true },
	{ "forward.target", "retry_after_max", CFG_INT, 1, 86400, NULL, NULL,
	  "300", false, T(retry_after_max),
	  "longest Retry-After honoured, in seconds (a longer one is cut to this, logged)", true },
	{ "forward.target", "alarm_priority", CFG_INT, 1, 10, NULL, NULL,
	  "7", false, T(alarm_priority),
	  "rows of this priority and above travel in the alarm lane (10: no alarm lane)", true },

	{ "forward.rule", "target", CFG_STRING, 0, 255, NULL, NULL,
	  "", false, U(target),
	  "the [forward.target NAME] the selected events go to; required", true },
	{ "forward.rule", "priority", CFG_INT, 0, 9, NULL, NULL,
	  "5", false, U(priority),
	  "0-9, higher is sent first; an event several rules select goes once, at the highest", true },
	{ "forward.rule", "class", CFG_STRING, 0, 1024, NULL, NULL,
	  "", false, U(device_class),
	  "device classes selected (comma-separated, e.g. access_gate, camera); empty: any", true },
	{ "forward.rule", "event_type", CFG_STRING, 0, 1024, NULL, NULL,
	  "", false, U(event_type),
	  "event types selected (e.g. person_passage, device_offline); empty: any", true },
	{ "forward.rule", "severity", CFG_STRING, 0, 1024, NULL, NULL,
	  "", false, U(severity),
	  "severities selected (info, notice, warning, critical); empty: any", true },
	{ "forward.rule", "community", CFG_STRING, 0, 4096, NULL, NULL,
	  "", false, U(community),
	  "community ids selected; empty: any", true },
	{ "forward.rule", "route", CFG_STRING, 0, 4096, NULL, NULL,
	  "", false, U(route),
	  "names of the [route NAME] sections selected; empty: any", true },

	{ "store", "host", CFG_STRING, 1, 255, NULL, NULL,
	  "127.0.0.1", false, F(store_host),
	  "PostgreSQL server address (an IP address avoids a blocking DNS lookup) or socket directory", false },
	{ "store", "port", CFG_INT, 1, 65535, NULL, NULL,
	  "5432", false, F(store_port),
	  "PostgreSQL server port", false },
	{ "store", "dbname", CFG_STRING, 1, 63, NULL, NULL,
	  "gridbridge", false, F(store_dbname),
	  "database name", false },
	{ "store", "user", CFG_STRING, 1, 63, NULL, NULL,
	  "gridbridge", false, F(store_user),
	  "database role", false },
	{ "store", "password", CFG_SECRET, 0, 65535, NULL, NULL,
	  "", false, F(store_password),
	  "password of the database role; prefer password_file", false },
	{ "store", "password_file", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(store_password_file),
	  "file holding the database password; a relative name is looked up in $CREDENTIALS_DIRECTORY", false },
	{ "store", "partitions_ahead", CFG_INT, 1, 366, NULL, NULL,
	  "7", false, F(store_partitions_ahead),
	  "days of daily event partitions created ahead of time", false },
	{ "store", "retention_days", CFG_INT, 0, 36500, NULL, NULL,
	  "180", false, F(store_retention_days),
	  "events and quarantined messages older than this many days are deleted (0: keep all)", false },
	{ "store", "batch_rows", CFG_INT, 1, 100000, NULL, NULL,
	  "500", false, F(store_batch_rows),
	  "rows (events and quarantined messages) per database transaction at most", false },
	{ "store", "batch_bytes", CFG_SIZE, 4096, 256LL << 20, NULL, NULL,
	  "1M", false, F(store_batch_bytes),
	  "bytes of row data per transaction at most", false },
	{ "store", "batch_ms", CFG_INT, 1, 60000, NULL, NULL,
	  "100", false, F(store_batch_ms),
	  "milliseconds a partial batch waits for more rows while others are in flight", false },
	{ "store", "max_inflight", CFG_INT, 1, 64, NULL, NULL,
	  "4", false, F(store_max_inflight),
	  "transactions sent and not yet confirmed (pipelined on one connection)", false },
	{ "store", "attrs", CFG_BOOL, 0, 0, NULL, NULL,
	  "true", false, F(store_attrs),
	  "also store each record as JSON in events.attrs (jsonb) for ad-hoc queries", false },
	{ "store", "connect_timeout", CFG_INT, 1, 300, NULL, NULL,
	  "10", false, F(store_connect_timeout),
	  "seconds allowed for connecting to the database before retrying", false },
	{ "store", "sslmode", CFG_ENUM, 0, 0, sslmode_choices, sslmode_values,
	  "prefer", false, F(store_sslmode),
	  "TLS to the server: disable, allow, prefer (TLS if offered, unverified), require, "
	  "verify-ca or verify-full (certificate and host name verified)", false },
	{ "store", "sslrootcert", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(store_sslrootcert),
	  "PEM file of the CA(s) that signed the server's certificate; required with verify-ca "
	  "and verify-full", false },
	{ "store", "sslcert", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(store_sslcert),
	  "PEM client certificate for servers that ask for one (with sslkey)", false },
	{ "store", "sslkey", CFG_PATH, 0, PATH_MAX, NULL, NULL,
	  "", false, F(store_sslkey),
	  "PEM private key of sslcert; a relative name is looked up in $CREDENTIALS_DIRECTORY",
	  false },
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
		struct config_error *v = realloc(errs->v, cap * sizeof(*v));
		if (v == NULL)
			abort();
		errs->v = v;
		errs->cap = cap;
	}
	struct config_error *e = &errs->v[errs->n++];
	e->file = strdup(file);
	e->line = line;
	e->message = strdup(msg);
	if (e->file == NULL || e->message == NULL)
		abort();
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
		char **nl = realloc(list, (n + 2) * sizeof(*nl));
		if (nl == NULL || (nl[n] = strdup(v)) == NULL)
			abort();
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
		char *s = strdup(v);
		if (s == NULL)
			abort();
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
static void finish_route(struct parse *p, void *inst);
static void finish_target(struct parse *p, void *inst);
static void finish_rule(struct parse *p, void *inst);

/* The kinds of [TYPE NAME] sections and where their arrays live. */
struct instance_type {
	const char *type;
	size_t size;
	size_t array;			/* offset of the array in struct config */
	size_t count;			/* offset of its length */
	void (*finish)(struct parse *p, void *inst);
};

static const struct instance_type instance_types[] = {
	{ "route", sizeof(struct config_route), F(routes), F(nroutes), finish_route },
	{ "forward.target", sizeof(struct config_target), F(targets), F(ntargets), finish_target },
	{ "forward.rule", sizeof(struct config_rule), F(rules), F(nrules), finish_rule },
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
		if (k->type == CFG_STRING || k->type == CFG_PATH || k->type == CFG_SECRET ||
		    k->type == CFG_URL)
			free(*(char **)field(base, k));
		else if (k->type == CFG_LIST)
			list_free(*(char ***)field(base, k));
	}
}

struct config *
config_defaults(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char err[256];

	if (cfg == NULL)
		abort();
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].instanced)
			continue;
		if (set_value(cfg, &config_keys[i], config_keys[i].def, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "bad built-in default: %s\n", err);
			abort();
		}
	}
	cfg->path = strdup("<defaults>");
	if (cfg->path == NULL)
		abort();
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

/* Checks a finished [route NAME] section: required keys, and values that
 * only the decoders and the route compiler can judge. */
static void
finish_route(struct parse *p, void *inst)
{
	struct config_route *r = inst;
	char err[160];

	if (r->pattern[0] == '\0') {
		add_error(p->errs, p->name, r->line, "[route %s] pattern is required", r->name);
	} else {
		struct route_pattern rp;
		if (route_compile(&rp, r->pattern, err, sizeof(err)) != 0)
			add_error(p->errs, p->name, key_line(p, "pattern"), "[route %s] pattern: %s",
			    r->name, err);
		else
			route_pattern_free(&rp);
	}
	enum decoder_id d;
	if (r->decoder[0] == '\0')
		add_error(p->errs, p->name, r->line, "[route %s] decoder is required", r->name);
	else if (decoder_by_name(r->decoder, &d) != 0)
		add_error(p->errs, p->name, key_line(p, "decoder"),
		    "[route %s] decoder: unknown decoder '%s'", r->name, r->decoder);
	Gridbridge__V1__DeviceClass dc;
	if (r->device_class[0] == '\0')
		add_error(p->errs, p->name, r->line, "[route %s] class is required", r->name);
	else if (decode_class_by_name(r->device_class, &dc) != 0)
		add_error(p->errs, p->name, key_line(p, "class"),
		    "[route %s] class: unknown device class '%s'", r->name, r->device_class);
	int tz;
	if (decode_parse_tz(r->timezone, &tz) != 0)
		add_error(p->errs, p->name, key_line(p, "timezone"),
		    "[route %s] timezone: '%s' is not an offset like +08:00", r->name, r->timezone);
}

static void
finish_target(struct parse *p, void *inst)
{
	struct config_target *t = inst;

	bool http = strncasecmp(t->url, "http://", 7) == 0;
	if (t->url[0] == '\0')
		add_error(p->errs, p->name, t->line, "[forward.target %s] url is required", t->name);
	else if (strncasecmp(t->url, "https://", 8) != 0 && !http)
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
}

/* Each item of a comma-separated list must be one `valid()` accepts. */
static void
check_names(struct parse *p, const struct config_rule *r, const char *key, const char *list,
    bool (*valid)(const char *name))
{
	const char *s = list;

	while (*s != '\0') {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		size_t n = strcspn(s, ",");
		size_t len = n;
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (n == 0)
			break;
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)(len < 255 ? len : 255), s);
		if (!valid(name))
			add_error(p->errs, p->name, key_line(p, key),
			    "[forward.rule %s] %s: unknown name '%s'", r->name, key, name);
		s += n;
	}
}

static bool
valid_class(const char *name)
{
	Gridbridge__V1__DeviceClass c;
	return decode_class_by_name(name, &c) == 0;
}

static bool
valid_event_type(const char *name)
{
	return rules_valid_event_type(name);
}

static bool
valid_severity(const char *name)
{
	return rules_valid_severity(name);
}

static void
finish_rule(struct parse *p, void *inst)
{
	struct config_rule *r = inst;

	if (r->target[0] == '\0')
		add_error(p->errs, p->name, r->line, "[forward.rule %s] target is required", r->name);
	check_names(p, r, "class", r->device_class, valid_class);
	check_names(p, r, "event_type", r->event_type, valid_event_type);
	check_names(p, r, "severity", r->severity, valid_severity);
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
	char *v = realloc(*arr, (*n + 1) * it->size);
	if (v == NULL)
		abort();
	*arr = v;
	struct config_instance *in = (struct config_instance *)(v + *n * it->size);
	(*n)++;
	memset(in, 0, it->size);
	in->name = strdup(name);
	in->line = p->line;
	if (in->name == NULL)
		abort();
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
	p.cfg->path = strdup(name);
	if (p.cfg->path == NULL)
		abort();

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
