/* config.c — the configuration: one table, one row per key.
 *
 * Every key is a row of config_keys[] (section, name, type, bounds, default,
 * reloadable, description). Parsing, defaults, validation, `-nv` printing,
 * reload and the documentation test all walk that table; adding a key is
 * adding a field to struct config and a row to the table.
 *
 * The loader knows no stage: checks that need a stage's knowledge (decoder
 * names, topic patterns, event types) are registered with it by the glue,
 * see config_register_check().
 *
 * Parsing collects every error as `FILE:LINE: message` and keeps going, so
 * an operator sees all mistakes at once. A config with errors is never
 * used: config_load() returns NULL and the caller keeps what it had.
 */
#ifndef GRIDBRIDGE_CONFIG_H
#define GRIDBRIDGE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum config_type {
	CFG_BOOL,
	CFG_INT,	/* integer in [min, max] */
	CFG_STRING,
	CFG_PATH,	/* file system path; empty means unset */
	CFG_SECRET,	/* printed as <redacted> when set */
	CFG_URL,	/* a string; a password in it (scheme://user:PASSWORD@host,
			 * or user:PASSWORD@host:port) is printed as <redacted> */
	CFG_ENUM,	/* one of choices[]; stored as its mapped value (int) */
	CFG_SIZE,	/* bytes, with an optional K, M or G suffix (1024-based) */
	CFG_LIST,	/* repeatable key; NULL-terminated char ** in file order */
};

/* Who applies a reloadable key on SIGHUP. Each stage with reloadable keys
 * has one apply function that reads all of them from the configuration;
 * main.c's reload calls it for every applier a key row names (a new
 * applier without its call there does not compile: -Wswitch). */
enum config_applier {
	CONFIG_RESTART = 0,	/* not reloadable: a change needs a restart */
	CONFIG_APPLY_LOG,	/* log_apply() */
	CONFIG_APPLY_JOURNAL,	/* journal_apply() */
	CONFIG_APPLY_DECODE,	/* pipeline_apply() */
};

struct config_key {
	const char *section;
	const char *name;
	enum config_type type;
	long long min, max;		/* CFG_INT */
	const char *const *choices;	/* CFG_ENUM, NULL-terminated */
	const int *choice_values;	/* CFG_ENUM, parallel to choices */
	const char *def;		/* default, as it would be written */
	bool reloadable;		/* applied by SIGHUP without restart */
	enum config_applier applied_by;	/* reloadable: who applies it */
	size_t offset;			/* of the field in struct config */
	const char *help;		/* one line, also used in conf/ */
	bool instanced;			/* a key of [section NAME] sections */
	bool required;			/* instanced: must not be left empty */
};

/* Instanced sections ([TYPE NAME]) all begin with these two fields. */
struct config_instance {
	char *name;
	int line;			/* of the [TYPE NAME] header */
};

/* One [route NAME] section: which topics, decoded how (checked when the
 * file is loaded, so mistakes are reported with their line). */
struct config_route {
	char *name;
	int line;			/* of the [route NAME] header */
	char *pattern;
	char *decoder;
	char *device_class;
	char *community;
	char *timezone;
	bool utc_is_local;
	long long heartbeat_timeout;	/* seconds; 0: never; -1: the class's */
	long long rate_limit;		/* messages/s per device; 0: none; -1: [decode]'s */
	long long rate_burst;		/* -1: [decode]'s */
};

/* One [device NAME] section: a device the registry knows before it speaks. */
struct config_device {
	char *name;
	int line;
	char *device;
	char *community;
	char *device_class;
	long long heartbeat_timeout;	/* seconds; 0: never; -1: the route's or class's */
	bool expected;
};

/* One [welfare HOUSEHOLD] section: an elderly person living alone. */
struct config_welfare {
	char *name;
	int line;
	char *community;
	char *door_sensors;		/* comma-separated device ids */
	char *peephole;
	long long inactive_hours;
	long long repeat_hours;
	char *night_window;		/* "HH:MM-HH:MM" or "" */
	long long night_openings;
	char *timezone;
};

enum forward_format { FORWARD_PROTOBUF = 0, FORWARD_JSON = 1 };
/* [forward.target] profile, mode, auth and picture (the viid profile's). */
enum forward_profile_kind { FORWARD_PROFILE_GRIDBRIDGE = 0, FORWARD_PROFILE_VIID = 1 };
enum viid_mode { VIID_MODE_UPLOAD = 0, VIID_MODE_CASCADE = 1 };
enum viid_session { VIID_SESSION_OWN = 0, VIID_SESSION_SHARED = 1 };
enum viid_auth { VIID_AUTH_DIGEST = 0, VIID_AUTH_BASIC = 1, VIID_AUTH_NONE = 2 };
enum viid_picture_mode { VIID_PICTURE_URL = 0, VIID_PICTURE_DATA = 1 };

/* [store] sslmode, in libpq's order (config_enum_name() gives its name). */
enum config_sslmode {
	SSLMODE_DISABLE, SSLMODE_ALLOW, SSLMODE_PREFER, SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA, SSLMODE_VERIFY_FULL,
};

/* One [forward.target NAME] section: an HTTPS endpoint of the platform. */
struct config_target {
	char *name;
	int line;
	char *url;
	int format;			/* enum forward_format */
	char *ca_file;
	char *cert_file;
	char *key_file;
	char *token_file;
	char *proxy;
	long long connect_timeout;	/* seconds */
	long long timeout;		/* seconds, whole request */
	long long batch_rows;
	long long batch_bytes;
	long long linger_ms;
	long long max_inflight;
	long long retry_base_ms;
	long long retry_cap_ms;
	long long max_attempts;		/* 0: no limit */
	long long max_age;		/* seconds; 0: no limit */
	long long retry_after_max;	/* seconds */
	long long lease_margin;		/* seconds */
	long long alarm_priority;	/* this and above: the alarm lane; 10: none */
	bool allow_http;
	int profile;			/* enum forward_profile_kind */
	/* profile = viid */
	int viid_mode;			/* enum viid_mode */
	char *viid_device_id;		/* our 20-digit id; "" with profile = gridbridge */
	int viid_session;		/* enum viid_session */
	long long session_lease;	/* seconds, session = shared */
	char *username;			/* "": viid_device_id */
	char *password_file;
	int auth;			/* enum viid_auth */
	long long keepalive_s;
	long long register_retry_max_s;
	long long time_skew_warn_s;
	int picture;			/* enum viid_picture_mode */
	long long picture_max_bytes;
	long long picture_timeout;	/* seconds */
	char *picture_ca_file;
	char *picture_username;
	char *picture_password_file;
	/* mode = cascade */
	char *listen;			/* address:port of the listener */
	char *listen_cert_file;		/* "": plain HTTP (allow_http) */
	char *listen_key_file;
	char *listen_ca_file;		/* "": no client certificate asked for */
	char *listen_username;
	char *listen_password_file;
	char *platform_id;		/* "": any User-Identify */
	char *org_code;			/* "": viid_device_id's first 12 digits */
	int notify_auth;		/* enum viid_auth, of notifications */
	long long max_subscriptions;
};

/* One [viid.device NAME] section: the 20-digit GA/T 1400 id a device of
 * ours has on the VIID platforms. */
struct config_viid_device {
	char *name;
	int line;
	char *device;			/* the device id, as in the events */
	char *community;		/* "": any community */
	char *id;			/* 20 digits */
	/* the APEObject's other fields; "" (0): left out */
	char *dev_name;
	char *model;
	char *function_type;
	char *ip_addr;
	long long port;
	char *place_code;
	char *longitude, *latitude;	/* decimal degrees, checked at load */
};

/* One [forward.rule NAME] section: which events go to which target. Each
 * criterion is a comma-separated list of accepted names; empty accepts
 * everything. */
struct config_rule {
	char *name;
	int line;
	char *target;
	long long priority;
	char *device_class;
	char *event_type;
	char *severity;
	char *community;
	char *route;
};

struct config {
	/* [daemon] */
	int log_level;
	char *state_dir;
	char *clock_offset_file;
	long long log_rate_burst;
	long long log_rate_interval;
	long long stats_interval;

	/* [mqtt] */
	char *mqtt_host;
	long long mqtt_port;
	char *mqtt_client_id;
	long long mqtt_keepalive;
	char *mqtt_username;
	char *mqtt_password;
	char *mqtt_password_file;
	int mqtt_protocol;		/* 4 (3.1.1) or 5 */
	long long mqtt_session_expiry;
	long long mqtt_receive_maximum;
	char **mqtt_subscribe;
	char *mqtt_share_group;		/* "": no shared subscription */
	char *mqtt_shared_group;	/* its former name (config_share_group()) */
	long long mqtt_max_message_size;
	bool mqtt_tls;
	char *mqtt_ca_file;
	char *mqtt_cert_file;
	char *mqtt_key_file;

	/* [journal] */
	long long journal_segment_size;
	long long journal_disk_cap;
	long long journal_sync_batch;
	long long journal_sync_delay_ms;
	long long journal_sync_delay_rows;

	/* [store] */
	char *store_host;
	long long store_port;
	char *store_dbname;
	char *store_user;
	char *store_password;
	char *store_password_file;
	long long store_connect_timeout;
	long long store_answer_timeout;
	long long store_partitions_ahead;
	long long store_batch_rows;
	long long store_batch_bytes;
	long long store_batch_ms;
	long long store_linger_ms;
	long long store_linger_rows;
	long long store_max_inflight;
	bool store_attrs;
	long long store_retention_days;
	int store_sslmode;		/* enum config_sslmode */
	char *store_sslrootcert;
	char *store_sslcert;
	char *store_sslkey;

	/* [decode] */
	long long decode_max_clock_skew;
	long long decode_repeat_window;
	long long decode_repeat_topics;
	long long decode_rate_limit;
	long long decode_rate_burst;
	long long decode_rate_limit_devices;

	/* [route NAME] sections, in file order (first match wins). */
	struct config_route *routes;
	size_t nroutes;
	/* [forward.target NAME] and [forward.rule NAME] sections. */
	struct config_target *targets;
	size_t ntargets;
	struct config_rule *rules;
	size_t nrules;
	/* [viid.device NAME] sections. */
	struct config_viid_device *viid_devices;
	size_t nviid_devices;

	/* [admin] */
	char *admin_listen;
	long long admin_max_connections;
	long long admin_timeout;
	long long admin_ready_max_forward_lag;
	char *admin_status_token_file;
	long long admin_status_refresh;
	char *admin_status_timezone;

	/* [registry] */
	long long registry_hold_down;
	long long registry_expected_grace;
	long long registry_max_devices;
	long long registry_lease;	/* seconds (store_lease.h) */
	long long registry_timeout[8];	/* by gridbridge.v1.DeviceClass */
	/* [device NAME], [welfare HOUSEHOLD] sections. */
	struct config_device *devices;
	size_t ndevices;
	struct config_welfare *welfare;
	size_t nwelfare;

	/* Where the configuration came from (for messages). */
	char *path;
};

/* [mqtt] share_group: at most this many bytes. */
#define CONFIG_SHARE_GROUP_MAX 64
/* [mqtt] client_id once expanded (the node name): at most this many
 * bytes, which every MQTT broker we know accepts. */
#define CONFIG_CLIENT_ID_MAX 64
/* An instance name (gridbridged -i NAME): at most this many bytes of
 * letters, digits, '.', '_' and '-'. */
#define CONFIG_INSTANCE_MAX 32

extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/* One error: where and what. */
struct config_error {
	char *file;
	int line;		/* 0 when not tied to a line */
	char *message;
};

struct config_errors {
	struct config_error *v;
	size_t n, cap;
};

/* A check of a [TYPE NAME] key's value that only the code owning the key's
 * meaning can make (is "hikvision" a decoder? is the pattern valid?). It
 * calls report(ctx, why) for each problem, `why` as in "unknown decoder
 * 'x'"; the loader prefixes the file, the key's line and "[TYPE NAME] key: ".
 * The type uses no config type, so a stage can provide a check without
 * knowing the configuration; the glue registers it (routing.c). */
typedef void config_check_fn(const char *value, void (*report)(void *ctx, const char *why),
    void *ctx);
/* Runs `fn` on every value of key `key` of [section NAME] sections loaded
 * from now on (after the key's required check). Registering the same
 * function twice is harmless. */
void config_register_check(const char *section, const char *key, config_check_fn *fn);

/* Parses `path`. Returns a new config, or NULL with every problem appended
 * to `errs` (which the caller owns and frees with config_errors_clear()). */
struct config *config_load(const char *path, struct config_errors *errs);
/* Same, from an open stream; `name` is used in messages. */
struct config *config_load_stream(FILE *f, const char *name, struct config_errors *errs);
/* A config holding only the defaults. */
struct config *config_defaults(void);
void config_free(struct config *cfg);

void config_errors_clear(struct config_errors *errs);
/* Prints each error as `FILE:LINE: message` on `out`. */
void config_errors_print(const struct config_errors *errs, FILE *out);

/* The shared subscription group in effect: [mqtt] share_group, or its
 * former name shared_group; "" for none. */
const char *config_share_group(const struct config *cfg);

/* The topic filters as they are subscribed: [mqtt] subscribe, each as
 * $share/<group>/<filter> when a share group is set. A new
 * NULL-terminated list; free with config_subscriptions_free(). */
char **config_subscriptions(const struct config *cfg);
void config_subscriptions_free(char **list);

/* [mqtt] client_id: %h stands for the host name, %i for the instance name
 * and %% for a %; nothing else may follow a %. config_client_id_check()
 * checks a template (config_load() does): 0, or -1 with why. */
int config_client_id_check(const char *tmpl, char *why, size_t whylen);
/* Expands `tmpl` into `out` (at least CONFIG_CLIENT_ID_MAX + 1 bytes).
 * `host` and `instance` may be NULL when not known; a template that needs
 * one of them is refused then. Returns 0, or -1 with why (the result is
 * empty or longer than CONFIG_CLIENT_ID_MAX bytes, a name is missing). */
int config_client_id_expand(const char *tmpl, const char *host, const char *instance,
    char *out, size_t outlen, char *why, size_t whylen);
/* An instance name: 1 to CONFIG_INSTANCE_MAX letters, digits, '.', '_' or
 * '-'. 0, or -1 with why. */
int config_instance_check(const char *name, char *why, size_t whylen);

/* Prints the effective configuration as INI, secrets redacted. */
void config_print(const struct config *cfg, FILE *out);

/* A [welfare] night_window ("HH:MM-HH:MM", or "" for none: -1, -1) as
 * minutes after midnight. Returns 0, or -1 when malformed. */
int config_night_window(const char *s, int *start_min, int *end_min);

/* The name of the CFG_ENUM key's value `value` ("verify-full" for [store]
 * sslmode SSLMODE_VERIFY_FULL), or NULL. */
const char *config_enum_name(const char *section, const char *name, int value);

/* Value of a key as it would be printed (secrets redacted); `buf` is used
 * for numbers. */
const char *config_value_str(const struct config *cfg, const struct config_key *k,
    char *buf, size_t buflen);

/* Moves the reloadable settings of `next` into `cur`. For each setting that
 * differs, calls `changed(k, applied, ctx)`: applied is false for settings
 * that need a restart (cur keeps its value). `next` is left with `cur`'s old
 * values and is still the caller's to free. */
void config_apply_reload(struct config *cur, struct config *next,
    void (*changed)(const struct config_key *k, bool applied, void *ctx), void *ctx);

#endif
