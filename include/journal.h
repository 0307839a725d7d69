/* journal.c — the durable, append-only journal of received messages.
 *
 * Every message the broker hands us is appended here, and its PUBACK leaves
 * only after an fdatasync() covers it (see "Ack after durable" below). Later
 * stages read the journal by sequence number; a checkpoint says what they
 * have made safe elsewhere, and segments wholly behind it are deleted.
 *
 * Files, in <state_dir>/journal/:
 *
 *   id                         the journal's identity: a random UUID made
 *                              with the journal, also in every segment
 *   00000000000000000001.seg   segments, named by the first seq they hold
 *   00000000000000004097.seg
 *   checkpoint                 the highest seq that may be deleted
 *   corrupt/                   damaged bytes moved aside by recovery
 *
 * Identity. A database checkpoint belongs to one journal: the store keys
 * it by this id, never by a name that a new or copied journal could share.
 * A state directory replaced by an empty one (new disk, reinstall) gets a
 * new id and starts from its first record. When `id` is lost but segments
 * remain, the id is taken back from their headers.
 *
 * Segment layout (all integers little-endian), versions 2 and 3:
 *
 *   +------+---------+-----------+------------+------+------------+
 *   | GBJ1 | version | first_seq | journal id | seed | header crc |   40 bytes
 *   | 4 B  | u32 = 3 | u64       | 16 B       | u32  | u32        |
 *   +------+---------+-----------+------------+------+------------+
 *   record, record, ...
 *
 * Segments written by earlier releases are still read: version 1 (16-byte
 * header: magic, version, first_seq; record CRCs from 0) and version 2
 * (records without packet id). New records always go to a version 3
 * segment.
 *
 * Record layout, version 3:
 *
 *   0        4        8        12            20                28   29    30          32           36    38
 *   +--------+--------+--------+-------------+-----------------+----+-----+-----------+------------+-----+-------+---------+
 *   | magic  | len    | crc32c | seq         | received_us     |qos |flags| topic_len | payload_len| mid | topic | payload |
 *   | "GBRJ" | u32    | u32    | u64         | i64 (UTC µs)    | u8 | u8  | u16       | u32        | u16 |       |         |
 *   +--------+--------+--------+-------------+-----------------+----+-----+-----------+------------+-----+-------+---------+
 *                              \______________________ len bytes, covered by crc32c (Castagnoli) _____________________/
 *
 *   mid: the MQTT packet id the broker gave a QoS 1 or 2 message (0 for
 *   QoS 0). After a restart it recognises what the broker sends again
 *   because our PUBACK never left (see mqtt.c, is_redelivery). Versions 1
 *   and 2 have no mid field (24 fixed bytes instead of 26); their records
 *   read back with mid 0.
 *
 *   flags bit 0 (JOURNAL_OVERSIZE): the message was larger than the
 *   configured limit; payload_len is its size and no payload follows.
 *   flags bit 1 (JOURNAL_RETAIN): the broker sent it as a retained message.
 *
 * Frames cannot be forged from payload bytes. In a version 2 segment the
 * CRC starts from the segment's random seed, which no device ever sees,
 * and records carry consecutive sequence numbers from the header's
 * first_seq: a frame is accepted only with the expected next number (after
 * damaged bytes, a number no further ahead than the damaged bytes could
 * hold records).
 *
 * Recovery at open: every segment is scanned and every record checked. A
 * partial or damaged record at the very end of the last segment (a crash
 * mid-write; never acknowledged, since it was never synced) is truncated
 * and logged with its size. Damage anywhere else is never skipped silently:
 * the bytes up to the next valid record are copied to corrupt/ (named after
 * the segment and offset), logged at error, and the segment is rewritten
 * without them. Sequence numbers resume after the highest seen (or the
 * checkpoint, whichever is higher).
 *
 * Ack after durable: journal_append() only buffers; journal_sync() writes
 * and fdatasync()s (and fsyncs the directory when a segment was created).
 * The MQTT stage calls sync as soon as the socket has nothing more to read
 * (after its sync delay, see mqtt.h; or once sync_batch records are
 * pending), and before every write to the broker
 * — PUBACKs wait in libmosquitto's queue until then.
 *
 * A failed write or fdatasync (EIO, ENOSPC, ...): the records since the
 * last good sync are not acknowledged, and the page cache can no longer be
 * trusted to say what is on disk, so the same sync is never tried again.
 * The segment is cut back to the size the last good sync covered and that
 * cut is synced; only then are the lost records' sequence numbers given
 * out again (they exist nowhere). If the cut cannot be made durable, the
 * journal is broken: it refuses everything and the daemon exits non-zero,
 * so that recovery at the next start reads what is really on disk. After
 * ENOSPC the journal counts as full for a few seconds (ingest pauses) and
 * until a checkpoint frees space.
 *
 * Disk cap: journal_full() turns true when the segments reach the cap; the
 * MQTT stage then stops taking messages until journal_full() is false
 * again (the checkpoint moved or the cap was raised). Appends are never
 * refused for the cap: the messages already read must be kept.
 *
 * The checkpoint file holds two slots (magic, seq, CRC), written in turn in
 * place, so that a torn write leaves the other; it is fdatasync()ed before
 * any segment behind it is deleted, and otherwise not synced at all: a
 * checkpoint lost in a crash only means records are read again (the
 * database has them and skips them). For the same reason it is not even
 * written at every commit: the database's checkpoint, committed in the
 * same transaction as the rows, is the authority on what is stored, and
 * the file is only a floor under it — written when segments are deleted
 * (then synced first), about once a second by the daemon, and at close.
 * What the file must guarantee is only that sequence numbers never go
 * back: a segment is deleted only behind a synced checkpoint, so the
 * highest number ever given out is always in a segment or in the file.
 *
 * The segment being appended to is kept when it falls behind the
 * checkpoint (unless the journal is past half its cap): at a low rate every commit
 * catches up, and deleting it each time would create a file, sync the
 * directory and delete a file per commit. It goes once the next segment
 * is rolled.
 *
 * So are the last two segments while they hold any of the last
 * `keep_records` records (under half the cap, and at open too: at most
 * two segments' space): a message can be stored while the
 * broker never got its PUBACK (a kill between the two), and the broker
 * then sends it again to the next process, which recognises it from the
 * journal's last records (main.c, mqtt_recall). Deleted because they
 * were stored, those records would be missing there, and the message
 * journaled and stored a second time.
 */
#ifndef GRIDBRIDGE_JOURNAL_H
#define GRIDBRIDGE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_MAGIC_SEGMENT "GBJ1"
#define JOURNAL_MAGIC_RECORD 0x4A524247u	/* "GBRJ" in file order */
#define JOURNAL_VERSION 3
#define JOURNAL_HEADER_SIZE 40			/* versions 2 and 3 */
#define JOURNAL_HEADER_SIZE_V1 16
#define JOURNAL_RECORD_HEAD 12			/* magic, len, crc */
#define JOURNAL_RECORD_FIXED 26			/* seq .. mid */
#define JOURNAL_RECORD_FIXED_V2 24		/* seq .. payload_len: versions 1, 2 */
#define JOURNAL_OVERSIZE 0x01
#define JOURNAL_RETAIN 0x02
#define JOURNAL_ID_LEN 36			/* a UUID as text */

struct journal;
struct journal_reader;

struct journal_options {
	const char *dir;	/* created if missing */
	uint64_t segment_size;	/* bytes; a segment is rolled past this */
	uint64_t disk_cap;	/* bytes; journal_full() at or above */
	/* The last two segments are kept behind the checkpoint while they
	 * hold any of the last this many records and the journal is under
	 * half its cap (0: none), also at open: the daemon's next start
	 * reads them (mqtt_recall). */
	uint64_t keep_records;
};

/* One message, as appended and as read back. `topic` and `payload` point
 * into the caller's (append) or the reader's (read) memory. */
struct journal_record {
	uint64_t seq;
	int64_t received_us;
	uint8_t qos;
	uint8_t flags;
	uint16_t mid;		/* the MQTT packet id; 0 for QoS 0 and in old segments */
	const char *topic;
	size_t topic_len;
	const void *payload;	/* NULL for oversize records */
	uint32_t payload_len;	/* oversize: the size of the message */
};

/* Opens `o->dir`, recovers it (see above) and logs what it found. Returns
 * NULL after logging why. */
struct journal *journal_open(const struct journal_options *o);
/* Syncs what is pending, then closes. */
void journal_free(struct journal *j);

/* The journal's identity, a UUID as text (JOURNAL_ID_LEN characters). */
const char *journal_id(const struct journal *j);
/* A failure left the segment in a state the journal cannot vouch for:
 * nothing more is taken; the daemon must exit so recovery runs. */
bool journal_broken(const struct journal *j);

/* Buffers one record and gives it the next sequence number (also stored in
 * rec->seq). received_us 0 means now. Returns 0, or -1 after logging. */
int journal_append(struct journal *j, struct journal_record *rec);
/* Writes and fdatasync()s everything appended. Returns 0, or -1 after
 * logging: the unsynced records are gone and must not be acknowledged
 * (see "A failed write or fdatasync" above). */
int journal_sync(struct journal *j);
/* The database holds records of this journal's id up to `floor`, more
 * than the journal had when opened (`from` - 1): the state directory was
 * restored from an older copy. The records from `from` on get new numbers
 * after `floor` (copied, synced), and the checkpoint moves past the old
 * ones. Returns 0, or -1 after logging (the journal is then broken). */
int journal_renumber(struct journal *j, uint64_t from, uint64_t floor);
/* Records appended but not yet synced. */
size_t journal_pending(const struct journal *j);
/* The last sequence number an fdatasync covers: readers must not go past
 * it (a record written but not synced can vanish in a crash, and its
 * number be given again). */
uint64_t journal_durable_seq(const struct journal *j);
/* How many syncs made appended records durable so far (any caller's, a
 * segment's roll included): a record appended when this was N is durable
 * once it is more than N. */
uint64_t journal_syncs(const struct journal *j);

/* Everything up to and including `seq` is safe elsewhere. When segments
 * wholly behind it can go, the checkpoint file is written and synced and
 * they are deleted; otherwise the file is written by
 * journal_flush_checkpoint() (or at close). */
int journal_checkpoint(struct journal *j, uint64_t seq);
/* Writes the checkpoint into its file if it moved (not synced): for
 * readers of the directory, such as `gridbridgectl journal stat`. */
int journal_flush_checkpoint(struct journal *j);

void journal_set_disk_cap(struct journal *j, uint64_t cap);
/* Applies the reloadable [journal] keys of `cfg` (disk_cap) on SIGHUP. */
struct config;
void journal_apply(struct journal *j, const struct config *cfg);
bool journal_full(const struct journal *j);

struct journal_stat {
	unsigned segments;
	uint64_t bytes;		/* on disk, incl. headers */
	uint64_t first_seq;	/* 0 when empty */
	uint64_t last_seq;	/* 0 when nothing was ever appended */
	uint64_t checkpoint_seq;
	uint64_t disk_cap;
	bool full;
};
void journal_stat(const struct journal *j, struct journal_stat *st);

/* Reading, by sequence number, from a directory that a running daemon may
 * be appending to: a partial record at the end is the end. Works without a
 * struct journal, so operator tools can read a live journal. */
struct journal_reader *journal_reader_open(const char *dir, uint64_t from_seq);
/* 1 with the next record (valid until the next call), 0 at the end, -1 on
 * an I/O error or damage in the middle (logged; the reader then moves on to
 * the next valid record). */
int journal_reader_next(struct journal_reader *r, struct journal_record *rec);
void journal_reader_free(struct journal_reader *r);
/* Records after `seq` are treated as not there yet (0: no limit). */
void journal_reader_set_limit(struct journal_reader *r, uint64_t seq);

/* Statistics of a journal directory without opening it for writing (safe
 * while the daemon runs): reads every record. `records` counts them;
 * `damaged` counts damaged places. Returns 0 or -1. */
int journal_dir_stat(const char *dir, struct journal_stat *st, uint64_t *records,
    uint64_t *damaged);

/* Reads the checkpoint of a journal directory (0 when none). */
uint64_t journal_read_checkpoint(const char *dir);
/* Reads the identity of a journal directory into `out` (JOURNAL_ID_LEN + 1
 * bytes). Returns 0, or -1 when it has none yet. */
int journal_read_id(const char *dir, char *out);

/* CRC-32C (Castagnoli) of `len` bytes, continuing from `crc` (start: 0). */
uint32_t journal_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
