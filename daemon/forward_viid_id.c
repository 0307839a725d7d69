/* forward_viid_id.c — GA/T 1400 identifiers and times: see forward_viid.h.
 *
 * Choices where the standard leaves room or implementations differ (to
 * move to gridbridge.conf(5) with the profile):
 *
 * - Device ids (GA/T 1400.1, after GB/T 28181 annex D.1): exactly 20
 *   ASCII digits; the first two must be a province of GB/T 2260 (11-15,
 *   21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82), the other parts are
 *   only checked to be digits (type and network codes have reserved
 *   ranges that platforms use).
 *
 * - Sequences. Implementations take the 5-digit sequence of image, object
 *   and business ids from a counter per prefix (a database or Redis
 *   counter per device and second). gridbridge keeps no such state and
 *   must give a retried event the ids of its first attempt, so the
 *   sequence comes from the event: the first 8 bytes of SHA-256
 *   ("gridbridge/viid", kind, event id) mod 100000, one for the images and
 *   one for the object. Picture k of an event has the image sequence
 *   base + k (mod 100000), so one event's pictures never collide.
 *
 *   Collision bound: ids of two events can only collide when they come
 *   from the same VIID device in the same second (both are in the id).
 *   For two such events with m pictures each, some image id is shared
 *   with probability at most (2m - 1) / 100000 (m = 1: 1e-5; m = 2:
 *   3e-5); their object ids (48 digits) are shared only if the first
 *   images' and the objects' sequences both match: 1e-10. For k events of
 *   one device in one second, multiply by k(k-1)/2. A gate or barrier
 *   rarely reports two passages in one second.
 *
 *   What a platform does with a repeated id: the platforms and test
 *   platforms seen either answer 0 and keep the first object (the later
 *   event is then lost without an error; for a retry of the same event
 *   that is exactly what is wanted), or answer a non-zero status for
 *   that object, which the reply mapping records as failed (4-8) or
 *   retries (others) — with the same ids, so it fails in the end. No
 *   platform seen replaces the first object.
 *
 * - Subscription and notification ids (GA/T 1400.1 business objects, 33
 *   digits): a 12-digit public security organisation code (GA/T 543
 *   DE00060) + "03" subscription / "04" notification + YYYYMMDDhhmmss +
 *   a 5-digit sequence, as the open implementations build them. gridbridge
 *   has no organisation code of its own: the caller supplies one (the
 *   configuration; failing that, the first 12 digits of the gateway's own
 *   20-digit id have the right form). The time is not the clock's but one
 *   the caller derives from what is notified (its first event's time),
 *   and the sequence comes from the SHA-256 of a key the caller chooses
 *   (the subscription id and the notified events' ids), so a retried
 *   notification keeps its id.
 *
 * - Times: sent as YYYYMMDDhhmmss in Beijing time (UTC+8, China has no
 *   DST since 1991), the fraction dropped. Accepted from a platform
 *   (GET /VIID/System/Time, LocalTime): 14 digits, 17 digits (with
 *   milliseconds; both Beijing time) and milliseconds since the epoch as
 *   12 or 13 digits (2001-09-09 until 2286: a 14-digit millisecond count
 *   would be ambiguous with the first form); bare or in double quotes,
 *   white space around allowed. Seconds since the epoch, ISO 8601, dates
 *   that do not exist and years before 1970 are refused.
 */
#include "forward_viid.h"

#include <string.h>

#include "sha256.h"

#define BEIJING_S (8 * 3600)
#define US_PER_S 1000000LL

/* ---- device ids -------------------------------------------------------- */

static bool
digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
province(int p)
{
	return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
	    (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) ||
	    p == 71 || p == 81 || p == 82;
}

enum viid_id_part
forward_viid_check_device_id(const char *id)
{
	static const struct {
		size_t at, len;
		enum viid_id_part part;
	} parts[] = {
		{ 0, 8, VIID_ID_REGION },
		{ 8, 2, VIID_ID_INDUSTRY },
		{ 10, 3, VIID_ID_TYPE },
		{ 13, 1, VIID_ID_NETWORK },
		{ 14, 6, VIID_ID_SERIAL },
	};

	if (id == NULL || strlen(id) != VIID_DEVICE_ID_LEN)
		return VIID_ID_LENGTH;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (!digits(id + parts[i].at, parts[i].len))
			return parts[i].part;
	if (!province((id[0] - '0') * 10 + (id[1] - '0')))
		return VIID_ID_REGION;
	return VIID_ID_OK;
}

const char *
forward_viid_id_part_name(enum viid_id_part part)
{
	switch (part) {
	case VIID_ID_OK:
		return "ok";
	case VIID_ID_LENGTH:
		return "length (20 digits)";
	case VIID_ID_REGION:
		return "administrative region (digits 1-8)";
	case VIID_ID_INDUSTRY:
		return "industry (digits 9-10)";
	case VIID_ID_TYPE:
		return "type (digits 11-13)";
	case VIID_ID_NETWORK:
		return "network (digit 14)";
	case VIID_ID_SERIAL:
		return "serial (digits 15-20)";
	}
	return "unknown";
}

/* ---- times ------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (H.
 * Hinnant's algorithms). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int
forward_viid_time_format(int64_t us, char out[VIID_TIME_LEN + 1])
{
	int64_t s = floor_div(us, US_PER_S) + BEIJING_S;
	int64_t days = floor_div(s, 86400), sod = s - days * 86400, y;
	int m, d;

	civil_from_days(days, &y, &m, &d);
	if (y < 1970 || y > 9999) {
		out[0] = '\0';
		return -1;
	}
	int h = (int)(sod / 3600), mi = (int)(sod / 60 % 60), sec = (int)(sod % 60);
	/* Fixed widths, every field in range: exactly 14 characters. */
	static const char dig[] = "0123456789";
	int v[] = { (int)(y / 1000), (int)(y / 100 % 10), (int)(y / 10 % 10), (int)(y % 10),
		m / 10, m % 10, d / 10, d % 10, h / 10, h % 10, mi / 10, mi % 10, sec / 10,
		sec % 10 };
	for (int i = 0; i < VIID_TIME_LEN; i++)
		out[i] = dig[v[i]];
	out[VIID_TIME_LEN] = '\0';
	return 0;
}

static int
number(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static bool
leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* YYYYMMDDhhmmss[SSS], Beijing time, into UTC microseconds. */
static int
parse_civil(const char *s, size_t n, int64_t *us)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y = number(s, 4), mo = number(s + 4, 2), d = number(s + 6, 2);
	int h = number(s + 8, 2), mi = number(s + 10, 2), sec = number(s + 12, 2);
	int ms = n == 17 ? number(s + 14, 3) : 0;

	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
		return -1;
	if (d > mdays[mo - 1] + (mo == 2 && leap(y)))
		return -1;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - BEIJING_S;
	*us = t * US_PER_S + ms * 1000LL;
	return 0;
}

static bool
space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int
forward_viid_time_parse(const char *s, size_t len, int64_t *us)
{
	if (s == NULL)
		return -1;
	while (len > 0 && space(s[0]))
		s++, len--;
	while (len > 0 && space(s[len - 1]))
		len--;
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
		s++, len -= 2;
	if (len == 0 || !digits(s, len))
		return -1;
	if (len == 14 || len == 17)
		return parse_civil(s, len, us);
	if (len == 12 || len == 13) {
		int64_t ms = 0;
		for (size_t i = 0; i < len; i++)
			ms = ms * 10 + (s[i] - '0');
		*us = ms * 1000;
		return 0;
	}
	return -1;
}

/* ---- ids --------------------------------------------------------------- */

static unsigned
hash_mod(const void *key, size_t n, char kind, char sub)
{
	static const char label[] = "gridbridge/viid";
	struct sha256 h;
	uint8_t digest[32];
	uint64_t v = 0;

	sha256_init(&h);
	sha256_update(&h, label, sizeof(label));	/* with its NUL, as a separator */
	sha256_update(&h, &kind, 1);
	sha256_update(&h, &sub, 1);
	sha256_update(&h, key, n);
	sha256_final(&h, digest);
	for (int i = 0; i < 8; i++)
		v = v << 8 | digest[i];
	return (unsigned)(v % 100000);
}

unsigned
forward_viid_sequence(const uint8_t event_id[16], char kind)
{
	return hash_mod(event_id, 16, kind, 0);
}

static void
put5(char *out, unsigned v)
{
	for (int i = 4; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void
put2(char *out, int v)
{
	out[0] = (char)('0' + v / 10 % 10);
	out[1] = (char)('0' + v % 10);
}

int
forward_viid_image_id(const char *device, const uint8_t event_id[16], int64_t time_us,
    unsigned index, char out[VIID_IMAGE_ID_LEN + 1])
{
	char t[VIID_TIME_LEN + 1];

	out[0] = '\0';
	if (forward_viid_time_format(time_us, t) != 0)
		return -1;
	memcpy(out, device, VIID_DEVICE_ID_LEN);
	memcpy(out + 20, "02", 2);
	memcpy(out + 22, t, VIID_TIME_LEN);
	put5(out + 36, (forward_viid_sequence(event_id, 'i') + index) % 100000);
	out[VIID_IMAGE_ID_LEN] = '\0';
	return 0;
}

void
forward_viid_object_id(const char *image_id, enum viid_object kind,
    const uint8_t event_id[16], char out[VIID_OBJECT_ID_LEN + 1])
{
	memcpy(out, image_id, VIID_IMAGE_ID_LEN);
	put2(out + 41, (int)kind);
	put5(out + 43, forward_viid_sequence(event_id, 'o'));
	out[VIID_OBJECT_ID_LEN] = '\0';
}

void
forward_viid_source_id(const char *object_id, char out[VIID_IMAGE_ID_LEN + 1])
{
	memcpy(out, object_id, VIID_IMAGE_ID_LEN);
	out[VIID_IMAGE_ID_LEN] = '\0';
}

int
forward_viid_business_id(const char *org, enum viid_business kind, int64_t time_us,
    const void *key, size_t n, char out[VIID_BUSINESS_ID_LEN + 1])
{
	char t[VIID_TIME_LEN + 1];

	out[0] = '\0';
	if (org == NULL || strlen(org) != VIID_ORG_LEN || !digits(org, VIID_ORG_LEN))
		return -1;
	if (forward_viid_time_format(time_us, t) != 0)
		return -1;
	memcpy(out, org, VIID_ORG_LEN);
	put2(out + 12, (int)kind);
	memcpy(out + 14, t, VIID_TIME_LEN);
	put5(out + 28, hash_mod(key, n, 'b', (char)kind));
	out[VIID_BUSINESS_ID_LEN] = '\0';
	return 0;
}
