#ifndef PORTWATCH_CSQLITE_SHIM_H
#define PORTWATCH_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a macro around a cast Swift cannot import. */
static inline sqlite3_destructor_type pw_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
