# jobq — PGXS build.  `make && make install`; tests: `test/run`.
EXTENSION   = jobq
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" jobq.control)

MODULE_big  = jobq
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
HEADERS     = $(wildcard src/*.h)

# The install script is assembled from sql/install/NN_*.sql in name order.
INSTALL_PIECES = $(sort $(wildcard sql/install/*.sql))
# Earlier versions' scripts (sql/versions): the install script of a release
# as shipped, frozen (a copy of history, never edited: test/integration/
# upgrade.sh creates that version and updates it), and update scripts built
# from a .sql.in whose functions come from the install pieces
# (expand-functions.awk), so that no live function has a second copy.
# When the version moves on, an update script must stop following the
# install pieces: commit its built form as the .sql and delete its .sql.in
# (otherwise it would get the next version's function bodies).
UPDATES     = $(patsubst %.sql.in,%.sql,$(wildcard sql/versions/$(EXTENSION)--*--*.sql.in))
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql $(UPDATES)
DATA        = $(filter-out $(UPDATES),$(wildcard sql/versions/$(EXTENSION)--*.sql))

# Every sql/*.sql is a pg_regress input; test/run drives them (needs a
# preloaded server, so `make installcheck` is not used directly).
REGRESS     = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --outputdir=results/regress

PG_CONFIG  ?= /usr/lib/postgresql/15/bin/pg_config
PG_CPPFLAGS = -Isrc
PG_CFLAGS   = -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-sign-compare $(JOBQ_CFLAGS)
SHLIB_LINK  = -lcurl

EXTRA_CLEAN = $(DATA_built) results regression.diffs regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PIECES) jobq.control Makefile
	@printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit' > $@
	cat $(INSTALL_PIECES) >> $@

sql/versions/%.sql: sql/versions/%.sql.in sql/versions/expand-functions.awk $(EXTENSION)--$(EXTVERSION).sql
	awk -f sql/versions/expand-functions.awk $(EXTENSION)--$(EXTVERSION).sql $< > $@.tmp && mv $@.tmp $@

$(OBJS): $(HEADERS)

.PHONY: test demo bench
test:
	test/run
demo:
	test/demo
bench:
	bench/run
