/*-------------------------------------------------------------------------
 *
 * queue_cache.h
 *	  The executor's cache of SQL queues (queue_cache.c).
 *
 * IDENTIFICATION
 *	  src/queue_cache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_QUEUE_CACHE_H
#define JOBQ_QUEUE_CACHE_H

#include "fmgr.h"
#include "datatype/timestamp.h"

/* A SQL queue as the executor needs it (cache entry, see queue_cache.c). */
typedef struct JobqQueue
{
	char	   *name;
	uint32		name_hash;		/* JobqQueueNameHash(name): wake-up hints */
	char	   *handler_text;	/* jobq.queues.handler */
	Oid			handler;		/* InvalidOid: handler dropped */
	FmgrInfo	flinfo;
	Oid			rettype;
	int64		timeout_ms;
	int64		warn_after_ms;
	bool		limited;		/* concurrency or rate_limit set */
	TimestampTz held_until;		/* its circuit breaker holds it until then */
} JobqQueue;

extern void QueueCacheRefresh(void);
extern int	QueueCacheCount(void);
extern JobqQueue *QueueCacheGet(int i);
extern TimestampTz QueueCacheNextDue(void);
extern bool QueueCacheAnyHeld(void);

/* A time limit (interval datum) in whole milliseconds, 0 for NULL. */
extern int64 JobqIntervalToMs(Datum d, bool isnull);

#endif							/* JOBQ_QUEUE_CACHE_H */
