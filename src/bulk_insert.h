/*-------------------------------------------------------------------------
 *
 * bulk_insert.h
 *	  Many rows into one of jobq's own tables at once (bulk_insert.c).
 *
 * IDENTIFICATION
 *	  src/bulk_insert.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_BULK_INSERT_H
#define JOBQ_BULK_INSERT_H

#include "postgres.h"
#include "utils/relcache.h"

typedef struct JobqBulkInsert JobqBulkInsert;

/*
 * Open jobq.<relname> for bulk insertion in the current transaction.  NULL
 * when jobq.direct_access is off: the caller then inserts through SQL.
 */
extern JobqBulkInsert *JobqBulkBegin(const char *relname);

/* The open table: attribute numbers and tuple descriptor for the caller. */
extern Relation JobqBulkRelation(JobqBulkInsert *bulk);

/*
 * Add one row: values/isnull in the table's attribute order, one per
 * attribute (dropped ones NULL).  They are copied; rows are written in
 * groups, the last group by JobqBulkEnd.
 */
extern void JobqBulkAdd(JobqBulkInsert *bulk, Datum *values, bool *isnull);

/* Write what is left, close the table (its lock stays until commit). */
extern void JobqBulkEnd(JobqBulkInsert *bulk);

/* The number of attname in the table, or an error when it has none. */
extern AttrNumber JobqBulkAttnum(JobqBulkInsert *bulk, const char *attname);

#endif							/* JOBQ_BULK_INSERT_H */
