/* loadgen — publishes realistic device events to an MQTT broker, as fast as
 * possible or at a target rate, for the ingest benchmark (bench/ingest.py).
 *
 * usage: loadgen [-h host] [-p port] [-n count] [-q qos] [-c clients]
 *                [-r rate] [-w window] [-s seed] [-C communities]
 *                [-D devices] [-V 311|5] [-i id-prefix] [-t timeout]
 *                [-e now|SECONDS] [-u] [-P file] [-d]
 *
 * Every message is one line of JSON (no newline inside, so a subscriber that
 * prints one message per line can be counted with wc -l), 300..1200 bytes,
 * one of three shapes taken from tests/fixtures/devices/:
 *
 *   sac/<community>/access/<device>/event   Hikvision access controller event
 *   sac/<community>/vehicle/<device>/event  Hikvision ANPR (plate) event
 *   sac/<community>/door/<device>/event     zigbee door contact state
 *
 * and carries a unique `"seq": n` (0..count-1) as its last top-level member.
 * The content of message n depends only on (seed, n): the same seed gives
 * the same messages whatever the number of clients.
 *
 * Each client is a thread with its own connection (clean session, client
 * id "<prefix>-<i>"); client i publishes seq i, i+c, i+2c, ... With QoS 1 a
 * client keeps at most `window` PUBLISHes without PUBACK; with QoS 0 at most
 * `window` messages not yet written to the socket. With -r the total rate is
 * spread evenly over the clients (0: as fast as possible).
 *
 * stderr gets `start monotonic=SECONDS` (CLOCK_MONOTONIC, the clock of
 * Python's time.monotonic()) once every client is connected, right before
 * the first PUBLISH; stdout gets the summary
 *
 *   sent=N acked=N seconds=X rate=Y cpu=Z
 *
 * where `acked` counts PUBACKs (QoS 1) or messages written (QoS 0), seconds
 * run from the start to the last PUBACK, rate = acked / seconds and cpu is
 * the CPU time loadgen itself used (user + system, seconds).
 * Exit status: 0 when every message was acknowledged, 1 on a connection
 * error, a refused message or the timeout, 2 on a usage error.
 *
 * -d prints the messages as `topic<TAB>payload` lines instead of sending
 * them (no broker needed).
 *
 * For the end-to-end benchmark (bench/e2e.py):
 *   -e now      device times are the wall clock when the message is made
 *               (instead of 2025-03-18 + n/2 s), as a live device's would
 *               be: the events land in today's partition, none is
 *               clock-skewed (the content of message n then also depends
 *               on when it is made);
 *   -e SECONDS  the same with a fixed base (Unix time) + n/2 s;
 *   -u          every access event gets its own serialNo (10000 + n): the
 *               daemon's event id of an access event is made from device,
 *               serial, type and time, and the default serial (a counter
 *               shared by 7 messages) can give two messages the same id;
 *   -P file     writes `seq<TAB>unix_time` (CLOCK_REALTIME, µs) for every
 *               message when mosquitto_publish() took it, at the end.
 * The start line also gives `realtime=SECONDS` (CLOCK_REALTIME at the same
 * moment as `monotonic`).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_MAX 2048
#define TOPIC_MAX 128

struct options {
	const char *host;
	int port;
	long count;
	int qos;
	int clients;
	double rate;		/* messages/s over all clients, 0: no limit */
	int window;
	uint64_t seed;
	int communities;
	int devices;		/* per class and community */
	int protocol;		/* MQTT_PROTOCOL_V311 or MQTT_PROTOCOL_V5 */
	const char *id_prefix;
	double timeout;		/* seconds for the whole run */
	bool dump;
	bool event_now;		/* -e now: device times from the wall clock */
	long event_base;	/* -e SECONDS: base of the device times */
	bool unique_serial;	/* -u */
	const char *pubtimes;	/* -P file */
};

static struct options opt = {
	.host = "127.0.0.1",
	.port = 1883,
	.count = 10000,
	.qos = 1,
	.clients = 1,
	.rate = 0,
	.window = 100,
	.seed = 1,
	.communities = 4,
	.devices = 8,
	.protocol = MQTT_PROTOCOL_V311,
	.id_prefix = NULL,
	.timeout = 300,
	.dump = false,
	.event_now = false,
	.event_base = 1742227200L,	/* 2025-03-18T00:00:00+08:00 */
	.unique_serial = false,
	.pubtimes = NULL,
};

/* -P: CLOCK_REALTIME of each message's publish, indexed by seq. */
static double *pub_times;

static double
wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * messages */

static uint64_t
splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A number in [0, n). */
static unsigned
pick(uint64_t *s, unsigned n)
{
	return (unsigned)(splitmix64(s) % n);
}

#define PICK(s, arr) ((arr)[pick((s), sizeof(arr) / sizeof((arr)[0]))])

static const char *const names[] = {
	"ZHANG San", "LI Si", "WANG Wu", "ZHAO Liu", "CHEN Jing", "LIU Yang",
	"YANG Fang", "HUANG Lei", "ZHOU Min", "WU Qiang", "XU Li", "SUN Hao",
};
static const char *const gate_names[] = {
	"North gate pedestrian lane 1", "North gate pedestrian lane 2",
	"South gate pedestrian lane 1", "East gate", "Unit door B03-U2",
	"Unit door B05-U1", "Underground garage lift lobby",
};
static const char *const verify_modes[] = {
	"cardOrFace", "face", "card", "cardAndPw", "fingerPrint",
};
static const char *const provinces[] = {
	"皖", "苏", "沪", "浙", "京", "鲁", "豫", "鄂",
};
static const char *const plate_colors[] = { "blue", "yellow", "green", "white" };
static const char *const vehicle_colors[] = {
	"white", "black", "gray", "red", "blue", "silver",
};
static const char *const lanes[] = {
	"North gate vehicle lane IN", "North gate vehicle lane OUT",
	"Garage ramp IN", "Garage ramp OUT",
};
static const char *const list_names[] = { "allowList", "otherList", "blockList" };
static const char *const models[] = { "MCCGQ11LM", "MCCGQ01LM", "SNZB-04" };

enum kind { KIND_ACCESS, KIND_VEHICLE, KIND_DOOR };
static const char *const kind_class[] = { "access", "vehicle", "door" };

static void
format_time(char *buf, size_t size, long t, bool compact)
{
	time_t local = (time_t)(t + 8 * 3600);
	struct tm tm;

	gmtime_r(&local, &tm);
	strftime(buf, size, compact ? "%Y%m%d%H%M%S" : "%Y-%m-%dT%H:%M:%S+08:00", &tm);
}

static void
format_date_path(char *buf, size_t size, long t)
{
	time_t local = (time_t)(t + 8 * 3600);
	struct tm tm;

	gmtime_r(&local, &tm);
	strftime(buf, size, "%Y/%m/%d", &tm);
}

/* Builds the topic and payload of message seq; returns the payload length
 * or -1 if it did not fit. */
static int
make_message(long seq, char *topic, size_t tsize, char *p, size_t psize)
{
	uint64_t s = opt.seed * 0x2545f4914f6cdd1dULL + (uint64_t)seq;
	unsigned r = pick(&s, 100);
	enum kind kind = r < 45 ? KIND_ACCESS : r < 70 ? KIND_VEHICLE : KIND_DOOR;
	unsigned comm = pick(&s, (unsigned)opt.communities);
	unsigned dev = pick(&s, (unsigned)opt.devices);
	long t = opt.event_now ? (long)time(NULL) - (long)pick(&s, 3) :
	    opt.event_base + seq / 2 + (long)pick(&s, 3);
	char community[32], device[64], when[64], stamp[64], day[64];
	int n;

	snprintf(community, sizeof(community), "3401040501%02u", comm % 100 + 1);
	format_time(when, sizeof(when), t, false);
	format_time(stamp, sizeof(stamp), t, true);
	format_date_path(day, sizeof(day), t);
	/* 20-digit GB/T 28181 style ids for cameras and controllers; the
	 * door contacts are named after the flat they guard. */
	uint64_t ds = (uint64_t)comm * 1000 + dev;
	unsigned h = (unsigned)(splitmix64(&ds) % 5760);
	unsigned building = h % 12 + 1, unit = h / 12 % 4 + 1;
	unsigned flat = (h / 48 % 30 + 1) * 100 + h / 1440 + 1;
	if (kind == KIND_DOOR)
		snprintf(device, sizeof(device), "DC-B%02uU%u%04u", building, unit, flat);
	else
		snprintf(device, sizeof(device), "%s%08u", community,
		    (kind == KIND_ACCESS ? 90000001u : 90001001u) + dev);
	n = snprintf(topic, tsize, "sac/%s/%s/%s/event", community, kind_class[kind], device);
	if (n < 0 || (size_t)n >= tsize)
		return -1;

	unsigned ip3 = kind == KIND_ACCESS ? 1 : 2, ip4 = 31 + dev % 200;
	unsigned mac = (unsigned)(splitmix64(&s) & 0xffffff);

	switch (kind) {
	case KIND_ACCESS: {
		/* Hikvision AccessControllerEvent: major 5 (event), minor 75
		 * face pass, 76 face fail, 1 valid card, 9 invalid card. */
		static const unsigned minors[] = { 75, 75, 75, 1, 1, 76, 9 };
		unsigned minor = PICK(&s, minors);
		bool pass = minor == 75 || minor == 1;
		unsigned serial = opt.unique_serial ? 10000 + (unsigned)seq :
		    10000 + (unsigned)(seq / 7 % 80000);
		bool picture = minor != 1 && minor != 9;
		unsigned room = 100 * (1 + pick(&s, 30)) + 1 + pick(&s, 4);
		char url[320] = "";

		if (picture)
			snprintf(url, sizeof(url),
			    ", \"picturesNumber\": 1, \"pictureURL\": "
			    "\"http://10.20.0.5:8080/pic/%s/%s_%s_%u.jpg\"",
			    day, device, stamp, serial);
		else
			snprintf(url, sizeof(url), ", \"picturesNumber\": 0");
		n = snprintf(p, psize,
		    "{\"ipAddress\": \"10.20.%u.%u\", \"portNo\": 80, \"protocol\": \"HTTP\", "
		    "\"macAddress\": \"24:0f:9b:%02x:%02x:%02x\", \"channelID\": 1, "
		    "\"dateTime\": \"%s\", \"activePostCount\": 1, "
		    "\"eventType\": \"AccessControllerEvent\", \"eventState\": \"active\", "
		    "\"eventDescription\": \"Access Controller Event\", "
		    "\"AccessControllerEvent\": {\"deviceName\": \"%s\", "
		    "\"majorEventType\": 5, \"subEventType\": %u, \"name\": \"%s\", "
		    "\"cardReaderKind\": 1, \"cardReaderNo\": %u, \"verifyNo\": %u, "
		    "\"employeeNoString\": \"B%02uU%u%04u-%02u\", \"serialNo\": %u, "
		    "\"userType\": \"%s\", \"currentVerifyMode\": \"%s\", "
		    "\"frontSerialNo\": %u, \"attendanceStatus\": \"undefined\", "
		    "\"statusValue\": 0, \"mask\": \"%s\"%s}, \"seq\": %ld}",
		    ip3, ip4, mac >> 16, (mac >> 8) & 0xff, mac & 0xff, when,
		    PICK(&s, gate_names), minor, pass ? PICK(&s, names) : "",
		    1 + pick(&s, 2), 100 + pick(&s, 900), building, unit, room,
		    1 + pick(&s, 4), serial, pick(&s, 10) ? "normal" : "visitor",
		    PICK(&s, verify_modes), serial - 1, pick(&s, 4) ? "no" : "yes",
		    url, seq);
		break;
	}
	case KIND_VEHICLE: {
		static const char letters[] = "ABCDEFGHJKLMNPQRSTUVWXYZ";
		static const char alnum[] = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
		char plate[32], believe[40], pics[600];
		unsigned npics = 1 + pick(&s, 3), index = 3000 + (unsigned)(seq % 5000);
		bool in = pick(&s, 2) == 0;
		const char *list = PICK(&s, list_names);
		int k;

		k = snprintf(plate, sizeof(plate), "%s%c", PICK(&s, provinces),
		    letters[pick(&s, sizeof(letters) - 1)]);
		for (int i = 0; i < 5 && k > 0 && (size_t)k < sizeof(plate) - 1; i++)
			plate[k++] = alnum[pick(&s, sizeof(alnum) - 1)];
		plate[k] = '\0';
		k = 0;
		for (int i = 0; i < 7; i++)
			k += snprintf(believe + k, sizeof(believe) - (size_t)k, "%s%u",
			    i ? "," : "", 90 + pick(&s, 10));
		static const char *const pic_names[] = {
			"licensePlatePicture.jpg", "detectionPicture.jpg", "vehiclePicture.jpg",
		};
		static const char *const pic_kinds[] = { "plate", "scene", "vehicle" };
		k = 0;
		for (unsigned i = 0; i < npics; i++)
			k += snprintf(pics + k, sizeof(pics) - (size_t)k,
			    "%s{\"name\": \"%s\", \"url\": "
			    "\"http://10.20.0.5:8080/pic/%s/anpr_%s_%s.jpg\"}",
			    i ? ", " : "", pic_names[i], day, stamp, pic_kinds[i]);
		n = snprintf(p, psize,
		    "{\"ipAddress\": \"10.20.%u.%u\", \"portNo\": 80, \"protocol\": \"HTTP\", "
		    "\"macAddress\": \"44:a6:42:%02x:%02x:%02x\", \"channelID\": 1, "
		    "\"dateTime\": \"%s\", \"activePostCount\": 1, \"eventType\": \"ANPR\", "
		    "\"eventState\": \"active\", \"eventDescription\": \"ANPR\", "
		    "\"channelName\": \"%s\", \"ANPR\": {\"licensePlate\": \"%s\", "
		    "\"line\": 1, \"direction\": \"%s\", \"confidenceLevel\": %u, "
		    "\"plateType\": \"92TypeCivil\", \"plateColor\": \"%s\", "
		    "\"licenseBright\": %u, \"plateCharBelieve\": \"%s\", "
		    "\"vehicleType\": \"vehicle\", \"vehicleInfo\": {\"index\": %u, "
		    "\"colorDepth\": %u, \"color\": \"%s\", \"length\": 0, "
		    "\"vehicleLogoRecog\": %u}, \"vehicleListName\": \"%s\"}, "
		    "\"pictures\": [%s], \"barrier\": {\"action\": \"%s\", \"reason\": \"%s\"}, "
		    "\"seq\": %ld}",
		    ip3, ip4, mac >> 16, (mac >> 8) & 0xff, mac & 0xff, when,
		    PICK(&s, lanes), plate, in ? "forward" : "reverse", 80 + pick(&s, 20),
		    PICK(&s, plate_colors), 100 + pick(&s, 100), believe, index,
		    pick(&s, 2), PICK(&s, vehicle_colors), 1000 + pick(&s, 100), list,
		    pics, strcmp(list, "blockList") == 0 ? "keepClosed" : "open", list, seq);
		break;
	}
	case KIND_DOOR: {
		bool contact = pick(&s, 3) != 0;
		unsigned battery = 40 + pick(&s, 61);

		n = snprintf(p, psize,
		    "{\"deviceId\": \"%s\", \"household\": \"B%02u-U%u-%04u\", "
		    "\"ieeeAddr\": \"0x00158d0001%06x\", \"model\": \"%s\", "
		    "\"gateway\": \"edge-gw-%02u\", \"battery\": %u, \"contact\": %s, "
		    "\"state\": \"%s\", \"device_temperature\": %u, \"linkquality\": %u, "
		    "\"power_outage_count\": %u, \"trigger_count\": %u, \"voltage\": %u, "
		    "\"last_seen\": \"%s\", \"seq\": %ld}",
		    device, building, unit, flat, mac, PICK(&s, models), comm + 1, battery,
		    contact ? "true" : "false", contact ? "closed" : "open",
		    15 + pick(&s, 15), 20 + pick(&s, 235), pick(&s, 10), 1 + pick(&s, 50),
		    2700 + battery * 3, when, seq);
		break;
	}
	}
	if (n < 0 || (size_t)n >= psize)
		return -1;
	return n;
}

/* ------------------------------------------------------------------------
 * clients */

struct client {
	pthread_t thread;
	int index;
	struct mosquitto *mosq;
	long quota;		/* messages this client publishes */
	long sent;
	long acked;		/* PUBACKs (QoS 1) or writes (QoS 0) */
	long refused;		/* PUBACK with an error reason (MQTT 5) */
	int inflight;
	bool connected;
	int connack;		/* -1 until CONNACK */
	double end;		/* time of the last acknowledgement */
	char error[160];
};

static pthread_barrier_t connected_barrier, go_barrier;
static double start_time, deadline;
static atomic_bool abort_run;

static void
on_connect(struct mosquitto *mosq, void *arg, int rc, int flags,
    const mosquitto_property *props)
{
	struct client *c = arg;

	(void)mosq;
	(void)flags;
	(void)props;
	c->connack = rc;
	c->connected = rc == 0;
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc, const mosquitto_property *props)
{
	struct client *c = arg;

	(void)mosq;
	(void)props;
	c->connected = false;
	if (rc != 0 && c->error[0] == '\0')
		snprintf(c->error, sizeof(c->error), "disconnected: %s", mosquitto_strerror(rc));
}

static void
on_publish(struct mosquitto *mosq, void *arg, int mid, int reason,
    const mosquitto_property *props)
{
	struct client *c = arg;

	(void)mosq;
	(void)mid;
	(void)props;
	c->inflight--;
	if (reason >= 128)
		c->refused++;
	else
		c->acked++;
	c->end = now_s();
}

/* Connects and waits for the CONNACK; returns false with c->error set. */
static bool
client_connect(struct client *c)
{
	char id[128];
	int rc;

	if (opt.id_prefix != NULL)
		snprintf(id, sizeof(id), "%s-%d", opt.id_prefix, c->index);
	else
		snprintf(id, sizeof(id), "loadgen-%ld-%d", (long)getpid(), c->index);
	c->connack = -1;
	c->mosq = mosquitto_new(id, true, c);
	if (c->mosq == NULL) {
		snprintf(c->error, sizeof(c->error), "mosquitto_new: %s", strerror(errno));
		return false;
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, opt.protocol);
	/* Our own window decides; libmosquitto would otherwise hold back
	 * everything beyond 20 (MQTT 5: the broker's Receive Maximum still
	 * applies, the library queues what exceeds it). */
	mosquitto_max_inflight_messages_set(c->mosq, (unsigned)opt.window);
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	rc = mosquitto_connect(c->mosq, opt.host, opt.port, 60);
	if (rc != MOSQ_ERR_SUCCESS) {
		snprintf(c->error, sizeof(c->error), "connect %s:%d: %s", opt.host, opt.port,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return false;
	}
	double until = now_s() + 10;
	while (c->connack < 0 && now_s() < until) {
		rc = mosquitto_loop(c->mosq, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS)
			break;
	}
	if (c->connack != 0) {
		snprintf(c->error, sizeof(c->error), "no CONNACK from %s:%d: %s", opt.host,
		    opt.port, c->connack > 0 ? mosquitto_connack_string(c->connack) :
		    rc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(rc) : "timeout");
		return false;
	}
	return true;
}

/* Time at which message k of this client is due (rate limit). */
static double
due(const struct client *c, long k)
{
	return start_time + ((double)k * opt.clients + c->index) / opt.rate;
}

static void
run(struct client *c)
{
	char topic[TOPIC_MAX], payload[PAYLOAD_MAX];

	while (!atomic_load(&abort_run)) {
		bool done = c->acked + c->refused >= c->quota;
		if (done)
			break;
		double now = now_s();
		if (now > deadline) {
			snprintf(c->error, sizeof(c->error), "timeout after %g s", opt.timeout);
			return;
		}
		/* Publish while the window has room (and the rate allows). For
		 * QoS 0, stop while the library still has bytes to write. */
		while (c->sent < c->quota && c->inflight < opt.window &&
		    (opt.rate <= 0 || due(c, c->sent) <= now)) {
			long seq = c->index + c->sent * opt.clients;
			int len = make_message(seq, topic, sizeof(topic), payload, sizeof(payload));
			int rc;

			if (len < 0) {
				snprintf(c->error, sizeof(c->error), "message %ld too long", seq);
				return;
			}
			c->inflight++;
			if (pub_times != NULL)
				pub_times[seq] = wall_s();
			rc = mosquitto_publish(c->mosq, NULL, topic, len, payload, opt.qos, false);
			if (rc != MOSQ_ERR_SUCCESS) {
				c->inflight--;
				snprintf(c->error, sizeof(c->error), "publish: %s",
				    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
				return;
			}
			c->sent++;
			if (opt.qos == 0 && mosquitto_want_write(c->mosq))
				break;
		}
		int timeout_ms = 1000;
		if (opt.rate > 0 && c->sent < c->quota && c->inflight < opt.window) {
			double wait = due(c, c->sent) - now_s();
			timeout_ms = wait <= 0 ? 0 : (int)(wait * 1000) + 1;
			if (timeout_ms > 1000)
				timeout_ms = 1000;
		}
		int rc = mosquitto_loop(c->mosq, timeout_ms, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			if (c->error[0] == '\0')
				snprintf(c->error, sizeof(c->error), "connection lost: %s",
				    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
			return;
		}
	}
}

static void *
client_main(void *arg)
{
	struct client *c = arg;
	bool ok = client_connect(c);

	if (!ok)
		atomic_store(&abort_run, true);
	pthread_barrier_wait(&connected_barrier);
	pthread_barrier_wait(&go_barrier);
	if (ok && !atomic_load(&abort_run)) {
		c->end = start_time;
		run(c);
		if (c->error[0] != '\0')
			atomic_store(&abort_run, true);
	}
	if (c->mosq != NULL) {
		if (c->connected) {
			mosquitto_disconnect(c->mosq);
			for (int i = 0; i < 20 && c->connected; i++)
				if (mosquitto_loop(c->mosq, 50, 1) != MOSQ_ERR_SUCCESS)
					break;
		}
		mosquitto_destroy(c->mosq);
		c->mosq = NULL;
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * main */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: loadgen [-h host] [-p port] [-n count] [-q qos] [-c clients]\n"
	    "               [-r rate] [-w window] [-s seed] [-C communities] [-D devices]\n"
	    "               [-V 311|5] [-i id-prefix] [-t timeout] [-e now|SECONDS]\n"
	    "               [-u] [-P file] [-d]\n"
	    "  -h host         broker address (127.0.0.1)\n"
	    "  -p port         broker port (1883)\n"
	    "  -n count        messages in all (10000)\n"
	    "  -q qos          0 or 1 (1)\n"
	    "  -c clients      connections, one thread each (1)\n"
	    "  -r rate         messages/s over all clients, 0 = as fast as possible (0)\n"
	    "  -w window       per client: QoS 1 PUBLISHes awaiting PUBACK,\n"
	    "                  QoS 0 messages not yet written (100)\n"
	    "  -s seed         message content seed (1)\n"
	    "  -C communities  number of communities (4)\n"
	    "  -D devices      devices per class and community (8)\n"
	    "  -V 311|5        MQTT protocol version (311)\n"
	    "  -i prefix       client id prefix (loadgen-<pid>)\n"
	    "  -t seconds      give up after this long (300)\n"
	    "  -e now|SECONDS  device times: the wall clock, or SECONDS (Unix) + n/2\n"
	    "                  (default 2025-03-18T00:00:00+08:00 + n/2)\n"
	    "  -u              a unique serialNo for every access event\n"
	    "  -P file         write `seq<TAB>publish time` (Unix, µs) per message\n"
	    "  -d              print `topic<TAB>payload` lines, do not connect\n"
	    "  -?              this help\n");
}

static bool
parse_long(const char *s, long min, long max, long *out)
{
	char *end;

	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool
parse_double(const char *s, double min, double *out)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min))
		return false;
	*out = v;
	return true;
}

static int
dump(void)
{
	char topic[TOPIC_MAX], payload[PAYLOAD_MAX];

	for (long seq = 0; seq < opt.count; seq++) {
		int len = make_message(seq, topic, sizeof(topic), payload, sizeof(payload));
		if (len < 0) {
			fprintf(stderr, "loadgen: message %ld too long\n", seq);
			return 1;
		}
		printf("%s\t%.*s\n", topic, len, payload);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	int ch;
	long v;

	while ((ch = getopt(argc, argv, "h:p:n:q:c:r:w:s:C:D:V:i:t:e:uP:d?")) != -1) {
		bool ok = true;

		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': ok = parse_long(optarg, 1, 65535, &v); opt.port = (int)v; break;
		case 'n': ok = parse_long(optarg, 1, LONG_MAX / 4, &opt.count); break;
		case 'q': ok = parse_long(optarg, 0, 1, &v); opt.qos = (int)v; break;
		case 'c': ok = parse_long(optarg, 1, 256, &v); opt.clients = (int)v; break;
		case 'r': ok = parse_double(optarg, 0, &opt.rate); break;
		case 'w': ok = parse_long(optarg, 1, 65535, &v); opt.window = (int)v; break;
		case 's': ok = parse_long(optarg, 0, LONG_MAX, &v); opt.seed = (uint64_t)v; break;
		case 'C': ok = parse_long(optarg, 1, 99, &v); opt.communities = (int)v; break;
		case 'D': ok = parse_long(optarg, 1, 999, &v); opt.devices = (int)v; break;
		case 'V':
			ok = parse_long(optarg, 0, 311, &v) && (v == 5 || v == 311);
			opt.protocol = v == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;
			break;
		case 'i': opt.id_prefix = optarg; break;
		case 't': ok = parse_double(optarg, 0.001, &opt.timeout); break;
		case 'd': opt.dump = true; break;
		case 'e':
			if (strcmp(optarg, "now") == 0)
				opt.event_now = true;
			else
				ok = parse_long(optarg, 0, LONG_MAX / 2, &opt.event_base);
			break;
		case 'u': opt.unique_serial = true; break;
		case 'P': opt.pubtimes = optarg; break;
		case '?':
			if (optopt == 0 || optopt == '?') {
				usage(stdout);
				return 0;
			}
			usage(stderr);
			return 2;
		default:
			usage(stderr);
			return 2;
		}
		if (!ok) {
			fprintf(stderr, "loadgen: bad value for -%c: %s\n", ch, optarg);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (opt.dump)
		return dump();

	if (opt.pubtimes != NULL) {
		pub_times = calloc((size_t)opt.count, sizeof(*pub_times));
		if (pub_times == NULL) {
			perror("loadgen: calloc");
			return 1;
		}
	}
	mosquitto_lib_init();
	struct client *clients = calloc((size_t)opt.clients, sizeof(*clients));
	if (clients == NULL) {
		perror("loadgen: calloc");
		return 1;
	}
	pthread_barrier_init(&connected_barrier, NULL, (unsigned)opt.clients + 1);
	pthread_barrier_init(&go_barrier, NULL, (unsigned)opt.clients + 1);
	deadline = now_s() + opt.timeout;
	for (int i = 0; i < opt.clients; i++) {
		struct client *c = &clients[i];

		c->index = i;
		c->quota = opt.count / opt.clients + (i < opt.count % opt.clients ? 1 : 0);
		int rc = pthread_create(&c->thread, NULL, client_main, c);
		if (rc != 0) {
			fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
			return 1;
		}
	}
	pthread_barrier_wait(&connected_barrier);
	start_time = now_s();
	if (!atomic_load(&abort_run)) {
		fprintf(stderr, "start monotonic=%.6f realtime=%.6f\n", start_time, wall_s());
		fflush(stderr);
	}
	pthread_barrier_wait(&go_barrier);

	long sent = 0, acked = 0, refused = 0;
	double end = start_time;
	int status = 0;
	for (int i = 0; i < opt.clients; i++) {
		struct client *c = &clients[i];

		pthread_join(c->thread, NULL);
		sent += c->sent;
		acked += c->acked;
		refused += c->refused;
		if (c->end > end)
			end = c->end;
		if (c->error[0] != '\0') {
			fprintf(stderr, "loadgen: client %d: %s\n", i, c->error);
			status = 1;
		}
	}
	if (acked + refused != opt.count || refused > 0)
		status = 1;
	double seconds = end - start_time;
	printf("sent=%ld acked=%ld", sent, acked);
	if (refused > 0)
		printf(" refused=%ld", refused);
	printf(" seconds=%.3f rate=%.0f", seconds, seconds > 0 ? (double)acked / seconds : 0.0);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		printf(" cpu=%.2f", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	printf("\n");
	fflush(stdout);
	if (pub_times != NULL) {
		FILE *f = fopen(opt.pubtimes, "w");
		if (f == NULL) {
			fprintf(stderr, "loadgen: %s: %s\n", opt.pubtimes, strerror(errno));
			status = 1;
		} else {
			for (long i = 0; i < opt.count; i++)
				fprintf(f, "%ld\t%.6f\n", i, pub_times[i]);
			if (fclose(f) != 0) {
				fprintf(stderr, "loadgen: %s: %s\n", opt.pubtimes, strerror(errno));
				status = 1;
			}
		}
		free(pub_times);
	}
	pthread_barrier_destroy(&connected_barrier);
	pthread_barrier_destroy(&go_barrier);
	free(clients);
	mosquitto_lib_cleanup();
	return status;
}
