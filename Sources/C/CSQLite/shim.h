#ifndef PORTWATCH_CSQLITE_SHIM_H
#define PORTWATCH_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a macro around a cast Swift cannot import. */
static inline sqlite3_destructor_type pw_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/* Allocation statistics take a global mutex on every allocation and portwatch never reads
   them. Only takes effect before SQLite's first use in the process (else SQLITE_MISUSE). */
static inline int pw_sqlite_without_memory_statistics(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }
#endif
