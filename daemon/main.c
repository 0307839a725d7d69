/* main.c — gridbridged: options, configuration, the event loop, and the
 * wiring between the stages. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "decode.h"
#include "derive.h"
#include "journal.h"
#include "forward.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "mqtt.h"
#include "notify.h"
#include "pipeline.h"
#include "rules.h"
#include "routing.h"
#include "secret.h"
#include "store.h"
#include "store_lease.h"
#include "store_status.h"
#include "util.h"
#include "version.h"

/* Test hook: GRIDBRIDGE_CRASH_AT=before_append:N or after_append:N makes
 * the process SIGKILL itself at the N-th received message, before or after
 * appending it (after: buffered, not yet synced nor acknowledged);
 * after_sync:N, once a sync has made the N-th durable, before any PUBACK
 * it releases leaves. */
struct crash_hook {
	bool armed;
	bool after;
	bool synced;
	unsigned long at;
	unsigned long seen;
};

struct daemon {
	char status[160];	/* last STATUS= sent to systemd */
	char node[CONFIG_CLIENT_ID_MAX + 1];	/* [mqtt] client_id, expanded */
	struct event_base *base;
	struct config *cfg;
	struct notify *notify;
	struct journal *journal;
	bool journal_was_full;
	struct crash_hook crash;
	struct mqtt *mqtt;
	bool mqtt_started;
	bool stopping;
	struct event *drain;	/* stopping: waits for the journal to be stored */
	int64_t stop_deadline_ms;
	struct store *store;
	struct pipeline *pipeline;
	struct forward *forward;
	struct rules *rules;
	struct derive *derive;
	struct route *routes;
	size_t nroutes;
	struct admin *admin;
	struct store_status *status_figures;	/* the status page's figures */
	struct store_lease *lease;	/* the derived events' leases */
	char *status_token;
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *tick;
	int exit_code;		/* 1 after a fatal error in a stage */
	const char *failed;	/* the part that could not start */
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: gridbridged [-c FILE] [-i NAME] [-n [-v]]\n"
	    "       gridbridged --version | -h\n"
	    "\n"
	    "  -c, --config FILE  configuration file (default %s)\n"
	    "  -i, --instance NAME  this daemon's instance name, %%i in [mqtt] client_id\n"
	    "  -n, --check        check the configuration and exit: 0 valid, 1 invalid\n"
	    "  -v, --verbose      with -n: print the effective configuration\n"
	    "      --version      print the version and exit\n"
	    "  -h, --help         print this help and exit\n",
	    GRIDBRIDGE_DEFAULT_CONFIG);
}

/* The node name: [mqtt] client_id with %h (this host's name) and %i (the
 * instance name, -i) expanded. */
static int
node_name(struct daemon *d, const char *instance, char *why, size_t whylen)
{
	char host[256];
	bool known = gethostname(host, sizeof(host)) == 0 && host[0] != '\0';

	host[sizeof(host) - 1] = '\0';
	return config_client_id_expand(d->cfg->mqtt_client_id, known ? host : NULL, instance,
	    d->node, sizeof(d->node), why, whylen);
}

static void
log_config_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("config", "invalid configuration", "file=%s line=%d error=%s",
		    errs->v[i].file, errs->v[i].line, errs->v[i].message);
}

static void
setting_changed(const struct config_key *k, bool applied, void *ctx)
{
	(void)ctx;
	if (applied)
		log_info("config", "setting changed", "section=%s key=%s", k->section,
		    k->name);
	else
		log_notice("config", "changed setting needs a restart", "section=%s key=%s",
		    k->section, k->name);
}

/* One stage's apply function: the reloadable keys it owns, read again from
 * d->cfg. No default: an applier added to config.h needs its case here. */
static void
apply_stage(struct daemon *d, enum config_applier a)
{
	switch (a) {
	case CONFIG_RESTART:
		break;
	case CONFIG_APPLY_LOG:
		log_apply(d->cfg);
		break;
	case CONFIG_APPLY_JOURNAL:
		if (d->journal != NULL)
			journal_apply(d->journal, d->cfg);
		break;
	case CONFIG_APPLY_DECODE:
		if (d->pipeline != NULL)
			pipeline_apply(d->pipeline, d->cfg);
		break;
	}
}

/* Every stage that owns a reloadable key applies d->cfg, once, in the
 * order of the key table. */
static void
apply_reloadable(struct daemon *d)
{
	unsigned done = 0;

	for (size_t i = 0; i < config_nkeys; i++) {
		enum config_applier a = config_keys[i].applied_by;
		if (a != CONFIG_RESTART && (done & 1u << a) == 0) {
			done |= 1u << a;
			apply_stage(d, a);
		}
	}
}

static void
reload(struct daemon *d)
{
	struct config_errors errs = { 0 };

	notify_reloading();
	log_debug("config", "reload requested", "signal=HUP");
	log_info("config", "reloading", "file=%s", d->cfg->path);
	struct config *next = config_load(d->cfg->path, &errs);
	if (next == NULL) {
		log_config_errors(&errs);
		log_error("config", "reload failed, keeping previous configuration",
		    "file=%s errors=%zu", d->cfg->path, errs.n);
	} else {
		config_apply_reload(d->cfg, next, setting_changed, d);
		apply_reloadable(d);
		log_info("config", "configuration reloaded", "file=%s", d->cfg->path);
	}
	config_errors_clear(&errs);
	config_free(next);
	notify_ready("running");
}

/* Stopping: the broker connection is closed first (what it held made
 * durable and acknowledged; the broker queues the rest for the next
 * start), then what the journal holds is stored, for at most
 * STOP_DRAIN_MS while the database answers: after a clean stop the
 * journal normally holds nothing the database lacks. A second signal stops
 * at once; the journal keeps anything unstored for the next start. */
#define STOP_DRAIN_MS 5000

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	uint64_t left = d->pipeline != NULL ? pipeline_unstored(d->pipeline) : 0;

	(void)fd;
	(void)what;
	bool can_store = d->store != NULL && store_ready(d->store);
	bool forwarding = can_store && forward_stopping(d->forward);
	if ((left == 0 && !forwarding) || !can_store || util_mono_ms() >= d->stop_deadline_ms) {
		if (left > 0)
			log_info("main", "stopping with records not stored yet", "records=%llu "
			    "reason=%s", (unsigned long long)left,
			    can_store ? "timeout" : "database unavailable");
		event_base_loopbreak(d->base);
		return;
	}
	struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
	evtimer_add(d->drain, &tv);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		reload(d);
		return;
	}
	if (d->stopping || d->drain == NULL) {
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	notify_stopping();
	log_info("main", "stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	mqtt_quit(d->mqtt);
	forward_stop(d->forward);
	d->stop_deadline_ms = util_mono_ms() + STOP_DRAIN_MS;
	drain_cb(-1, 0, d);
}

/* What `systemctl status` shows: what the daemon cannot do right now. */
static void
update_status(struct daemon *d)
{
	char status[160];

	if (d->journal != NULL && d->journal_was_full)
		snprintf(status, sizeof(status), "ingest paused: journal full");
	else if (d->store != NULL && !store_ready(d->store))
		snprintf(status, sizeof(status), "database unavailable: journaling, not storing");
	else if (d->pipeline != NULL && pipeline_catching_up(d->pipeline))
		snprintf(status, sizeof(status), "catching up: storing the journal's backlog");
	else if (d->mqtt != NULL && !mqtt_connected(d->mqtt))
		snprintf(status, sizeof(status), "broker unavailable");
	else if (d->forward != NULL && forward_unavailable(d->forward) != NULL)
		snprintf(status, sizeof(status), "target %s unavailable: events kept in the outbox",
		    forward_unavailable(d->forward));
	else
		snprintf(status, sizeof(status), "running");
	if (strcmp(status, d->status) != 0) {
		snprintf(d->status, sizeof(d->status), "%s", status);
		notify_status(status);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	log_flush_suppressed();
	update_status(arg);
}

/* The state directory exists and is ours to write. */
static int
prepare_state_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		log_errno(LOG_LVL_ERROR, "main", "cannot create state directory", "dir=%s", dir);
		return -1;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		log_error("main", "state directory is not a directory", "dir=%s", dir);
		return -1;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		log_errno(LOG_LVL_ERROR, "main", "state directory not writable", "dir=%s", dir);
		return -1;
	}
	return 0;
}

/* Starting failed at `stage`; main() says so once the failure's own line
 * (logged where it was found) is out. */
static int
start_failed(struct daemon *d, const char *stage)
{
	d->failed = stage;
	return -1;
}

static struct event *
add_signal(struct daemon *d, int sig)
{
	struct event *ev = evsignal_new(d->base, sig, signal_cb, d);

	if (ev == NULL || event_add(ev, NULL) != 0) {
		log_error("main", "cannot watch signal", "signal=%d", sig);
		if (ev != NULL)
			event_free(ev);
		return NULL;
	}
	return ev;
}

/* A stage cannot go on: stop with exit status 1 (systemd restarts us;
 * recovery at start reads what is on disk). */
static void
fatal_stop(struct daemon *d, const char *why)
{
	if (d->exit_code != 0)
		return;
	log_error("main", "stopping after a fatal error", "reason=%s", why);
	d->exit_code = 1;
	notify_stopping();
	event_base_loopbreak(d->base);
}

/* The journal could not vouch for what is on disk after a failed write. */
static void
check_journal(struct daemon *d)
{
	if (journal_broken(d->journal))
		fatal_stop(d, "journal broken");
}

/* ---- mqtt -> journal ---------------------------------------------------- */

static void
crash_point(struct crash_hook *h, bool after)
{
	if (h->armed && !h->synced && h->after == after && h->seen == h->at)
		raise(SIGKILL);
}

/* A message in the journal counts as received, under its route. */
static void
count_received(struct daemon *d, const char *topic)
{
	struct route_match m;
	const struct route *r = decode_find_route(d->routes, d->nroutes, topic, strlen(topic), &m);

	metrics.received.counts[metrics_label(&metrics.received, r != NULL ? r->name : "none",
	    SIZE_MAX)]++;
	metrics.received_all++;
}

static int
sink_message(void *ctx, const struct mqtt_message *msg)
{
	struct daemon *d = ctx;
	struct journal_record rec = {
		.qos = (uint8_t)msg->qos,
		.mid = msg->mid,
		.flags = (uint8_t)((msg->oversize ? JOURNAL_OVERSIZE : 0) |
		    (msg->retain ? JOURNAL_RETAIN : 0)),
		.topic = msg->topic,
		.topic_len = strlen(msg->topic),
		.payload = msg->payload,
		.payload_len = (uint32_t)msg->payload_len,
	};

	d->crash.seen++;
	crash_point(&d->crash, false);
	int rc = journal_append(d->journal, &rec);
	crash_point(&d->crash, true);
	if (rc != 0) {
		check_journal(d);
		return rc;
	}
	count_received(d, msg->topic);
	return 0;
}

static int
sink_flush(void *ctx, uint64_t since_us)
{
	struct daemon *d = ctx;

	if (journal_sync(d->journal) != 0) {
		check_journal(d);
		return -1;
	}
	if (d->crash.armed && d->crash.synced && d->crash.seen >= d->crash.at)
		raise(SIGKILL);
	pipeline_durable(d->pipeline, since_us);
	return 0;
}

/* ---- store -> pipeline ---------------------------------------------------- */

/* The broker is not asked for messages before the database has said that
 * this daemon's node name and journal are its own (the store's locks): a
 * second daemon started with the same name would otherwise take over the
 * broker session, journal and acknowledge messages, and then stop, leaving
 * them in a journal nobody stores. A database that cannot be reached does
 * not hold ingest back: the journal takes the messages meanwhile. */
/* The journal's last messages, so that the broker's redelivery of those
 * whose PUBACK never left (a kill, a crash) is recognised (mqtt.c,
 * is_redelivery). A failure to read only loses that: logged by the
 * reader. */
static void
recall_journal_end(struct daemon *d)
{
	char dir[4096];
	struct journal_stat st;
	struct journal_record rec;

	journal_stat(d->journal, &st);
	if (st.last_seq == 0)
		return;
	snprintf(dir, sizeof(dir), "%s/journal", d->cfg->state_dir);
	uint64_t from = st.last_seq > MQTT_RECALL_MAX ? st.last_seq - MQTT_RECALL_MAX + 1 : 1;
	struct journal_reader *r = journal_reader_open(dir, from);
	if (r == NULL)
		return;
	journal_reader_set_limit(r, st.last_seq);
	int rc;
	while ((rc = journal_reader_next(r, &rec)) == 1)
		if (rec.qos > 0)
			mqtt_recall(d->mqtt, rec.topic, rec.topic_len, rec.payload,
			    rec.payload_len, rec.mid, rec.received_us);
	journal_reader_free(r);
}

static void
start_mqtt(struct daemon *d, const char *why)
{
	if (d->mqtt_started || d->stopping)
		return;
	d->mqtt_started = true;
	log_debug("main", "connecting to the broker", "after=%s", why);
	recall_journal_end(d);
	if (mqtt_start(d->mqtt) != 0)
		fatal_stop(d, "cannot start the broker connection");
}

static void
store_ready_cb(void *ctx, uint64_t checkpoint)
{
	struct daemon *d = ctx;
	pipeline_store_ready(d->pipeline, checkpoint);
	start_mqtt(d, "database ready");
}

static void
store_unavailable_cb(void *ctx)
{
	start_mqtt(ctx, "database unavailable");
}

static void
store_report_cb(void *ctx, const struct store_report *r)
{
	struct daemon *d = ctx;
	pipeline_store_report(d->pipeline, r);
}

static void
store_derived_cb(void *ctx, const char *devices, const char *welfare, const char *reports)
{
	struct daemon *d = ctx;
	pipeline_store_derived(d->pipeline, devices, welfare, reports);
}

static void
store_fatal_cb(void *ctx, const char *why)
{
	fatal_stop(ctx, why);
}

static void
store_back_cb(void *ctx)
{
	struct daemon *d = ctx;
	pipeline_store_back(d->pipeline);
}

static void
store_committed_cb(void *ctx, uint64_t first, uint64_t last, uint64_t checkpoint)
{
	struct daemon *d = ctx;
	pipeline_store_committed(d->pipeline, first, last, checkpoint);
}

static void
store_rejected_cb(void *ctx, uint64_t first, uint64_t last, const char *sqlstate,
    const char *message)
{
	struct daemon *d = ctx;
	pipeline_store_rejected(d->pipeline, first, last, sqlstate, message);
}

static size_t
sink_pending(void *ctx)
{
	struct daemon *d = ctx;
	return journal_pending(d->journal);
}

static uint64_t
sink_syncs(void *ctx)
{
	struct daemon *d = ctx;
	return journal_syncs(d->journal);
}

static bool
sink_full(void *ctx)
{
	struct daemon *d = ctx;
	bool full = journal_full(d->journal);

	if (full != d->journal_was_full) {
		struct journal_stat st;
		journal_stat(d->journal, &st);
		if (full)
			log_warn("journal", "journal full, pausing ingest",
			    "cap=%llu size=%llu", (unsigned long long)st.disk_cap,
			    (unsigned long long)st.bytes);
		else
			log_info("journal", "journal has room again, resuming ingest",
			    "cap=%llu size=%llu", (unsigned long long)st.disk_cap,
			    (unsigned long long)st.bytes);
		d->journal_was_full = full;
		update_status(d);
	}
	return full;
}

static void
parse_crash_hook(struct crash_hook *h)
{
	const char *v = getenv("GRIDBRIDGE_CRASH_AT");
	const char *n;

	if (v == NULL || v[0] == '\0')
		return;
	if (strncmp(v, "before_append:", 14) == 0) {
		n = v + 14;
	} else if (strncmp(v, "after_append:", 13) == 0) {
		n = v + 13;
		h->after = true;
	} else if (strncmp(v, "after_sync:", 11) == 0) {
		n = v + 11;
		h->synced = true;
	} else {
		log_warn("main", "ignoring malformed GRIDBRIDGE_CRASH_AT", "");
		return;
	}
	char *end;
	h->at = strtoul(n, &end, 10);
	h->armed = *end == '\0' && h->at > 0;
	if (h->armed)
		log_warn("main", "crash hook armed (testing only)", "after=%d synced=%d at=%lu",
		    h->after, h->synced, h->at);
}

static int
open_journal(struct daemon *d)
{
	char dir[4096];
	const struct config *c = d->cfg;

	snprintf(dir, sizeof(dir), "%s/journal", c->state_dir);
	struct journal_options jo = {
		.dir = dir,
		.segment_size = (uint64_t)c->journal_segment_size,
		.disk_cap = (uint64_t)c->journal_disk_cap,
		.keep_records = MQTT_RECALL_MAX,	/* recall_journal_end() */
	};
	d->journal = journal_open(&jo);
	return d->journal != NULL ? 0 : -1;
}

/* The forwarder for the [forward.target] sections, on the store's outbox. */
static int
new_forward(struct daemon *d)
{
	const struct config *c = d->cfg;
	struct forward_target *ft = calloc(c->ntargets, sizeof(*ft));
	char (*keys)[4096] = calloc(c->ntargets, sizeof(*keys));
	char (*listen_keys)[4096] = calloc(c->ntargets, sizeof(*listen_keys));
	char (*orgs)[16] = calloc(c->ntargets, sizeof(*orgs));
	char **tokens = calloc(c->ntargets, sizeof(*tokens));
	char **passwords = calloc(c->ntargets, sizeof(*passwords));
	char **listen_passwords = calloc(c->ntargets, sizeof(*listen_passwords));
	char **picture_passwords = calloc(c->ntargets, sizeof(*picture_passwords));
	struct forward_viid_device *vdev = calloc(c->nviid_devices ? c->nviid_devices : 1,
	    sizeof(*vdev));
	int rc = -1;

	if (ft == NULL || keys == NULL || listen_keys == NULL || orgs == NULL || tokens == NULL ||
	    passwords == NULL || listen_passwords == NULL || picture_passwords == NULL ||
	    vdev == NULL)
		goto out;
	for (size_t i = 0; i < c->nviid_devices; i++) {
		const struct config_viid_device *v = &c->viid_devices[i];
		vdev[i] = (struct forward_viid_device){
			.device = v->device,
			.community = v->community,
			.id = v->id,
			.name = v->dev_name,
			.model = v->model,
			.function_type = v->function_type,
			.ip_addr = v->ip_addr,
			.port = (int)v->port,
			.place_code = v->place_code,
			.has_position = v->longitude[0] != '\0' && v->latitude[0] != '\0',
			.longitude = strtod(v->longitude, NULL),
			.latitude = strtod(v->latitude, NULL),
		};
	}
	for (size_t i = 0; i < c->ntargets; i++) {
		const struct config_target *t = &c->targets[i];
		if (t->token_file[0] != '\0' &&
		    (tokens[i] = secret_load(NULL, t->token_file, "forward")) == NULL)
			goto out;
		if (t->password_file[0] != '\0' &&
		    (passwords[i] = secret_load(NULL, t->password_file, "forward")) == NULL)
			goto out;
		const char *key = secret_key_file(t->key_file, keys[i], sizeof(keys[i]), "forward");
		if (key == NULL)
			goto out;
		bool cascade = t->profile == FORWARD_PROFILE_VIID && t->viid_mode == VIID_MODE_CASCADE;
		bool picture_data = t->profile == FORWARD_PROFILE_VIID &&
		    t->picture == VIID_PICTURE_DATA;
		if (picture_data && t->picture_password_file[0] != '\0' &&
		    (picture_passwords[i] = secret_load(NULL, t->picture_password_file,
		    "forward")) == NULL)
			goto out;
		const char *listen_key = "";
		if (cascade) {
			if ((listen_passwords[i] = secret_load(NULL, t->listen_password_file,
			    "forward")) == NULL)
				goto out;
			listen_key = secret_key_file(t->listen_key_file, listen_keys[i],
			    sizeof(listen_keys[i]), "forward");
			if (listen_key == NULL)
				goto out;
			/* NotificationIDs' organisation: as configured, else the
			 * first 12 digits of our id (checked at load). */
			snprintf(orgs[i], sizeof(orgs[i]), "%.12s", t->org_code[0] != '\0' ?
			    t->org_code : t->viid_device_id);
		}
		ft[i] = (struct forward_target){
			.name = t->name,
			.url = t->url,
			.json = t->format == FORWARD_JSON,
			.ca_file = t->ca_file,
			.cert_file = t->cert_file,
			.key_file = key,
			.token = tokens[i],
			.proxy = t->proxy,
			.connect_timeout = (long)t->connect_timeout,
			.timeout = (long)t->timeout,
			.batch_rows = (size_t)t->batch_rows,
			.batch_bytes = (size_t)t->batch_bytes,
			.linger_ms = (int)t->linger_ms,
			.max_inflight = (size_t)t->max_inflight,
			.retry_base_ms = (uint32_t)t->retry_base_ms,
			.retry_cap_ms = (uint32_t)t->retry_cap_ms,
			.max_attempts = t->max_attempts,
			.max_age = t->max_age,
			.retry_after_max = t->retry_after_max,
			.lease_margin = t->lease_margin,
			.alarm_priority = (int)t->alarm_priority,
			.allow_http = t->allow_http,
			.viid = t->profile == FORWARD_PROFILE_VIID,
			.viid_device_id = t->viid_device_id,
			.shared_session = t->viid_session == VIID_SESSION_SHARED,
			.session_lease_s = (int)t->session_lease,
			.username = t->username[0] != '\0' ? t->username : t->viid_device_id,
			.password = passwords[i],
			.auth = t->auth == VIID_AUTH_BASIC ? FORWARD_AUTH_BASIC :
			    t->auth == VIID_AUTH_NONE ? FORWARD_AUTH_NONE : FORWARD_AUTH_DIGEST,
			.keepalive_s = (long)t->keepalive_s,
			.register_retry_max_s = (long)t->register_retry_max_s,
			.time_skew_warn_s = (long)t->time_skew_warn_s,
			.viid_devices = vdev,
			.nviid_devices = c->nviid_devices,
			.picture_data = picture_data,
			.picture_max_bytes = (size_t)t->picture_max_bytes,
			.picture_timeout = (long)t->picture_timeout,
			.picture_ca_file = t->picture_ca_file,
			.picture_username = t->picture_username,
			.picture_password = picture_passwords[i],
			.cascade = cascade,
			.listen = t->listen,
			.listen_cert_file = t->listen_cert_file,
			.listen_key_file = listen_key,
			.listen_ca_file = t->listen_ca_file,
			.listen_username = t->listen_username,
			.listen_password = listen_passwords[i],
			.platform_id = t->platform_id,
			.org_code = orgs[i],
			.notify_auth = t->notify_auth == VIID_AUTH_BASIC ? FORWARD_AUTH_BASIC :
			    t->notify_auth == VIID_AUTH_DIGEST ? FORWARD_AUTH_DIGEST : FORWARD_AUTH_NONE,
			.max_subscriptions = (size_t)t->max_subscriptions,
		};
	}
	struct outbox ob;
	store_outbox(d->store, &ob);
	d->forward = forward_new(d->base, &ob, ft, c->ntargets);
	if (d->forward == NULL)
		goto out;
	store_set_outbox_hook(d->store, forward_rows_committed, d->forward);
	rc = 0;
out:
	for (size_t i = 0; tokens != NULL && i < c->ntargets; i++)
		secret_free(tokens[i]);
	free(tokens);
	for (size_t i = 0; passwords != NULL && i < c->ntargets; i++)
		secret_free(passwords[i]);
	free(passwords);
	for (size_t i = 0; listen_passwords != NULL && i < c->ntargets; i++)
		secret_free(listen_passwords[i]);
	free(listen_passwords);
	for (size_t i = 0; picture_passwords != NULL && i < c->ntargets; i++)
		secret_free(picture_passwords[i]);
	free(picture_passwords);
	free(listen_keys);
	free(orgs);
	free(vdev);
	free(keys);
	free(ft);
	return rc;
}

static int
start_stages(struct daemon *d)
{
	const struct config *c = d->cfg;
	char *mqtt_pw = NULL, *store_pw = NULL;
	char **subscriptions = config_subscriptions(c);
	int rc = -1;

	mqtt_pw = secret_load(c->mqtt_password, c->mqtt_password_file, "mqtt");
	store_pw = secret_load(c->store_password, c->store_password_file, "store");
	if (mqtt_pw == NULL || store_pw == NULL) {
		start_failed(d, "secrets");
		goto out;
	}
	char keybuf[4096], sslkeybuf[4096];
	const char *mqtt_key, *store_key;
	if ((mqtt_key = secret_key_file(c->mqtt_key_file, keybuf, sizeof(keybuf), "mqtt")) == NULL ||
	    (store_key = secret_key_file(c->store_sslkey, sslkeybuf, sizeof(sslkeybuf),
	    "store")) == NULL) {
		start_failed(d, "secrets");
		goto out;
	}

	struct mqtt_options mo = {
		.host = c->mqtt_host,
		.port = (int)c->mqtt_port,
		.client_id = d->node,
		.keepalive = (int)c->mqtt_keepalive,
		.username = c->mqtt_username,
		.password = mqtt_pw,
		.protocol = c->mqtt_protocol,
		.session_expiry = (unsigned)c->mqtt_session_expiry,
		.receive_maximum = (int)c->mqtt_receive_maximum,
		.filters = subscriptions,
		.max_message_size = (size_t)c->mqtt_max_message_size,
		.sync_batch = (size_t)c->journal_sync_batch,
		.sync_delay_ms = (int)c->journal_sync_delay_ms,
		.sync_delay_rows = (size_t)c->journal_sync_delay_rows,
		.tls = c->mqtt_tls,
		.ca_file = c->mqtt_ca_file,
		.cert_file = c->mqtt_cert_file,
		.key_file = mqtt_key,
	};
	struct mqtt_sink sink = {
		.message = sink_message,
		.flush = sink_flush,
		.pending = sink_pending,
		.syncs = sink_syncs,
		.full = sink_full,
		.ctx = d,
	};
	struct store_options so = {
		.host = c->store_host,
		.port = (int)c->store_port,
		.dbname = c->store_dbname,
		.user = c->store_user,
		.password = store_pw,
		.connect_timeout = (int)c->store_connect_timeout,
		.answer_timeout = (int)c->store_answer_timeout,
		.partitions_ahead = (int)c->store_partitions_ahead,
		.retention_days = (int)c->store_retention_days,
		.node = d->node,
		.journal_id = journal_id(d->journal),
		.max_reports = (size_t)c->decode_repeat_topics,
		.max_inflight = (int)c->store_max_inflight,
		.sslmode = config_enum_name("store", "sslmode", c->store_sslmode),
		.sslrootcert = c->store_sslrootcert,
		.sslcert = c->store_sslcert,
		.sslkey = store_key,
	};
	struct store_sink ssink = {
		.report = store_report_cb,
		.derived = store_derived_cb,
		.fatal = store_fatal_cb,
		.ready = store_ready_cb,
		.unavailable = store_unavailable_cb,
		.back = store_back_cb,
		.committed = store_committed_cb,
		.rejected = store_rejected_cb,
		.ctx = d,
	};
	char jdir[4096];
	snprintf(jdir, sizeof(jdir), "%s/journal", c->state_dir);
	if (routes_build(c, &d->routes, &d->nroutes) != 0) {
		start_failed(d, "routes");
		goto out;
	}
	if (d->nroutes == 0)
		log_warn("main", "no [route] sections: every message will be quarantined", "");
	for (size_t i = 0; i < d->nroutes; i++)
		metrics_label(&metrics.received, d->routes[i].name, SIZE_MAX);
	metrics_label(&metrics.received, "none", SIZE_MAX);
	d->rules = rules_build(c);
	d->derive = derive_build(c);
	if (c->nrules == 0 && c->ntargets > 0)
		log_warn("main", "no [forward.rule] sections: nothing will be forwarded", "");
	d->mqtt = mqtt_new(d->base, &mo, &sink);
	d->store = store_new(d->base, &so, &ssink);
	if (d->mqtt == NULL || d->store == NULL) {
		start_failed(d, d->mqtt == NULL ? "mqtt" : "store");
		goto out;
	}
	if (strcmp(c->admin_listen, "none") != 0) {
		/* The status page's figures: a connection of their own, with
		 * the store's settings. */
		int tz = 0;
		decode_parse_tz(c->admin_status_timezone, &tz);
		struct store_status_options sto = {
			.host = so.host, .port = so.port, .dbname = so.dbname, .user = so.user,
			.password = so.password, .connect_timeout = so.connect_timeout,
			.sslmode = so.sslmode, .sslrootcert = so.sslrootcert, .sslcert = so.sslcert,
			.sslkey = so.sslkey, .refresh_s = (int)c->admin_status_refresh,
			.tz_offset_s = tz * 60, .store = d->store,
		};
		if ((d->status_figures = store_status_new(d->base, &sto)) == NULL) {
			start_failed(d, "admin");
			goto out;
		}
	}
	if (c->ntargets > 0 && new_forward(d) != 0) {
		start_failed(d, "forward");
		goto out;
	}
	struct pipeline_options po = {
		.journal_dir = jdir,
		.node = d->node,
		.routes = d->routes,
		.nroutes = d->nroutes,
		.batch_rows = (size_t)c->store_batch_rows,
		.batch_bytes = (size_t)c->store_batch_bytes,
		.batch_ms = (int)c->store_batch_ms,
		.linger_ms = (int)c->store_linger_ms,
		.linger_rows = (size_t)c->store_linger_rows,
		.max_backlog = (size_t)c->store_max_inflight * 2,
		.attrs = c->store_attrs,
		.max_skew_us = c->decode_max_clock_skew * 1000000LL,
		.repeat_window_us = c->decode_repeat_window * 1000000LL,
		.repeat_max_topics = (size_t)c->decode_repeat_topics,
		.rate_limit = (int)c->decode_rate_limit,
		.rate_burst = (int)c->decode_rate_burst,
		.rate_devices = (size_t)c->decode_rate_limit_devices,
		.rules = d->rules,
		.derive = d->derive,
		.max_devices = (size_t)c->registry_max_devices,
		.clock_offset_file = c->clock_offset_file,
	};
	d->pipeline = pipeline_new(d->base, &po, d->journal, d->store);
	if (d->pipeline == NULL) {
		start_failed(d, "pipeline");
		goto out;
	}
	if (d->derive != NULL) {
		/* Which instance evaluates which derived events: a connection of
		 * its own, named by the client id and the journal (a restart with
		 * the same journal keeps its leases). */
		char holder[512];
		snprintf(holder, sizeof(holder), "%s/%s", c->mqtt_client_id, journal_id(d->journal));
		struct store_lease_options lo = {
			.host = so.host, .port = so.port, .dbname = so.dbname, .user = so.user,
			.password = so.password, .connect_timeout = so.connect_timeout,
			.sslmode = so.sslmode, .sslrootcert = so.sslrootcert, .sslcert = so.sslcert,
			.sslkey = so.sslkey, .holder = holder, .lease_s = (int)c->registry_lease,
			.store = d->store, .leases = pipeline_lease_leases, .rows = pipeline_lease_rows,
			.records = pipeline_lease_records, .followed = pipeline_lease_followed,
			.node = d->node, .ctx = d->pipeline,
		};
		if ((d->lease = store_lease_new(d->base, &lo)) == NULL) {
			start_failed(d, "store");
			goto out;
		}
		pipeline_set_lease(d->pipeline, d->lease);
	}
	if (store_start(d->store) != 0) {
		start_failed(d, "store");
		goto out;
	}
	if (d->forward != NULL)
		forward_start(d->forward);
	rc = 0;
out:
	config_subscriptions_free(subscriptions);
	secret_free(mqtt_pw);
	secret_free(store_pw);
	return rc;
}

static int
run(struct daemon *d)
{
	struct timeval sec = { .tv_sec = 1, .tv_usec = 0 };

	d->base = loop_new();
	if (d->base == NULL) {
		log_error("main", "cannot create event loop", "");
		return start_failed(d, "event_loop");
	}
	d->sig_term = add_signal(d, SIGTERM);
	d->sig_int = add_signal(d, SIGINT);
	d->sig_hup = add_signal(d, SIGHUP);
	if (d->sig_term == NULL || d->sig_int == NULL || d->sig_hup == NULL)
		return start_failed(d, "signals");
	d->drain = evtimer_new(d->base, drain_cb, d);
	d->tick = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
	if (d->drain == NULL || d->tick == NULL || event_add(d->tick, &sec) != 0) {
		log_error("main", "cannot start status timer", "");
		return start_failed(d, "event_loop");
	}
	d->notify = notify_new(d->base);
	if (d->notify == NULL)
		return start_failed(d, "notify");
	parse_crash_hook(&d->crash);
	if (open_journal(d) != 0)
		return start_failed(d, "journal");
	if (start_stages(d) != 0)
		return -1;	/* start_stages() said where */
	if (d->cfg->admin_status_token_file[0] != '\0' &&
	    (d->status_token = secret_load(NULL, d->cfg->admin_status_token_file, "admin")) == NULL)
		return start_failed(d, "secrets");
	int status_tz = 0;
	decode_parse_tz(d->cfg->admin_status_timezone, &status_tz);
	struct admin_options ao = {
		.listen = d->cfg->admin_listen,
		.max_connections = (int)d->cfg->admin_max_connections,
		.timeout_s = (int)d->cfg->admin_timeout,
		.ready_max_forward_lag_s = (int)d->cfg->admin_ready_max_forward_lag,
		.stats_interval_s = (int)d->cfg->stats_interval,
		.status_token = d->status_token,
		.status_refresh_s = (int)d->cfg->admin_status_refresh,
		.status_tz_offset_s = status_tz * 60,
	};
	struct admin_sources as = {
		.journal = d->journal, .mqtt = d->mqtt, .store = d->store,
		.pipeline = d->pipeline, .forward = d->forward, .derive = d->derive,
		.status = d->status_figures,
	};
	if ((d->admin = admin_new(d->base, &ao, &as)) == NULL) {
		log_error("main", "cannot start the admin listener", "");
		return start_failed(d, "admin");
	}

	notify_ready("running");
	log_info("main", "ready", "");
	if (event_base_dispatch(d->base) < 0) {
		log_error("main", "event loop failed", "");
		return -1;
	}
	return d->exit_code != 0 ? -1 : 0;
}

static void
daemon_free(struct daemon *d)
{
	admin_free(d->admin);
	store_status_free(d->status_figures);
	store_lease_free(d->lease);
	secret_free(d->status_token);
	mqtt_free(d->mqtt);	/* flushes into the journal first */
	pipeline_free(d->pipeline);
	forward_free(d->forward);
	store_free(d->store);
	rules_free(d->rules);
	derive_free(d->derive);
	journal_free(d->journal);
	routes_free(d->routes, d->nroutes);
	notify_free(d->notify);
	if (d->tick != NULL)
		event_free(d->tick);
	if (d->drain != NULL)
		event_free(d->drain);
	if (d->sig_term != NULL)
		event_free(d->sig_term);
	if (d->sig_int != NULL)
		event_free(d->sig_int);
	if (d->sig_hup != NULL)
		event_free(d->sig_hup);
	if (d->base != NULL)
		event_base_free(d->base);
	config_free(d->cfg);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "instance", required_argument, NULL, 'i' },
		{ "check", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = GRIDBRIDGE_DEFAULT_CONFIG;
	const char *instance = NULL;
	bool check = false, verbose = false;
	struct config_errors errs = { 0 };
	struct daemon d = { 0 };
	int opt;

	while ((opt = getopt_long(argc, argv, "c:i:nvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'i': instance = optarg; break;
		case 'n': check = true; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("gridbridged %s\n", GRIDBRIDGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || (verbose && !check)) {
		usage(stderr);
		return 2;
	}
	char why[256];
	if (instance != NULL && config_instance_check(instance, why, sizeof(why)) != 0) {
		fprintf(stderr, "gridbridged: -i: %s\n", why);
		usage(stderr);
		return 2;
	}

	routing_register_checks();
	d.cfg = config_load(path, &errs);
	if (d.cfg == NULL) {
		config_errors_print(&errs, stderr);
		if (!check) {
			/* FILE:LINE lines are for people; the log gets its own. */
			log_config_errors(&errs);
			log_error("main", "cannot start", "stage=config file=%s errors=%zu", path,
			    errs.n);
		}
		config_errors_clear(&errs);
		return 1;
	}
	if (node_name(&d, instance, why, sizeof(why)) != 0) {
		fprintf(stderr, "%s: [mqtt] client_id: %s\n", path, why);
		if (!check)
			log_error("main", "cannot start", "stage=config file=%s key=\"[mqtt] client_id\" "
			    "error=%s", path, why);
		config_free(d.cfg);
		return 1;
	}
	if (check) {
		if (verbose)
			config_print(d.cfg, stdout);
		config_free(d.cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	log_apply(d.cfg);
	metrics_init();
	log_info("main", "started", "version=%s config=%s pid=%ld node=%s", GRIDBRIDGE_VERSION,
	    path, (long)getpid(), d.node);
	if (d.cfg->mqtt_shared_group[0] != '\0')
		log_notice("config", "key renamed, the former name still accepted",
		    "section=mqtt key=shared_group new_key=share_group");

	int rc = 0;
	if (prepare_state_dir(d.cfg->state_dir) != 0)
		start_failed(&d, "state_dir");
	else if (run(&d) != 0)
		rc = 1;
	if (d.failed != NULL) {
		log_error("main", "cannot start", "stage=%s", d.failed);
		rc = 1;
	}
	daemon_free(&d);
	log_info("main", "stopped", "exit_code=%d", rc);
	return rc;
}
