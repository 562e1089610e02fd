/*-------------------------------------------------------------------------
 *
 * breaker_table.h
 *	  jobq.breakers, the table that keeps each circuit breaker's settings
 *	  and last state (breaker_table.c), as breaker.c reads and writes it.
 *
 * IDENTIFICATION
 *	  src/breaker_table.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_BREAKER_TABLE_H
#define JOBQ_BREAKER_TABLE_H

#include "datatype/timestamp.h"

typedef enum BreakerState
{
	BREAKER_CLOSED = 0,
	BREAKER_OPEN,
	BREAKER_HALF_OPEN,
	BREAKER_KEEP				/* _breaker_set: settings only */
} BreakerState;

/* One row of jobq.breakers; state BREAKER_KEEP: settings only. */
typedef struct BreakerRow
{
	char	   *key;
	int			threshold;
	int64		window_ms;
	int64		cooldown_ms;
	int			probes;
	BreakerState state;
	TimestampTz opened_at;
	TimestampTz next_probe_at;
	TimestampTz last_failure_at;
	char	   *last_error;
	int64		times_opened;
} BreakerRow;

typedef void (*BreakerRowFn) (Datum *values, bool *nulls, void *arg);

/* Call fn for key's row (true when there is one), or for every row (NULL). */
extern bool ScanBreakersTable(const char *key, BreakerRowFn fn, void *arg);
extern void RowFrom(Datum *values, bool *nulls, BreakerRow *row);
/* A BreakerRowFn copying the row into arg, a BreakerRow. */
extern void CopyRow(Datum *values, bool *nulls, void *arg);

extern int64 JobqIntervalMs(Datum d);
extern Datum JobqMsInterval(int64 ms);

/* breaker.c: a row written by configure/reset/trip, applied at commit. */
extern void BreakerSetAtCommit(const BreakerRow *row);

#endif							/* JOBQ_BREAKER_TABLE_H */
