/* adapter: the table of client adapters, selection, and running a chosen
 * adapter's steps on a request.
 *
 * An adapter is data: name, version, priority, description, match rules and
 * an ordered list of steps. The table is built once at start-up and never
 * changes, so workers share it without locks. Selection order: an
 * x-client-type header naming an adapter; else the highest-priority adapter
 * whose rules hold; else "default". */
#ifndef CCP_ADAPTER_H
#define CCP_ADAPTER_H

#include <json-c/json.h>
#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "http.h"
#include "status.h"
#include "steps.h"

typedef struct ccp_adapter ccp_adapter;
typedef struct ccp_adapters ccp_adapters;

/* Builds the table for a service ("claude" or "codex"). */
int ccp_adapters_load(ccp_adapters **out, const char *service, const ccp_config *cfg, ccp_buf *err);
void ccp_adapters_free(ccp_adapters *a);

/* Picks the adapter for a request. body may be NULL (not parsed or absent).
 * Returns NULL for an unknown x-client-type, with err saying the valid names. */
const ccp_adapter *ccp_adapters_select(const ccp_adapters *a, const ccp_request *req, json_object *body,
                                       ccp_buf *err);

/* {"adapters":[...]} in selection order. */
void ccp_adapters_describe(const ccp_adapters *a, ccp_buf *out);

const char *ccp_adapter_name(const ccp_adapter *ad);
/* False when the adapter never touches the body: the client's bytes go
 * upstream untouched, without a parse-and-reserialise round trip. */
bool ccp_adapter_changes_body(const ccp_adapter *ad);
/* Runs the steps in order. Returns CCP_OK, or CCP_ERR with err set (a
 * client error: the request is not fit for this adapter). */
int ccp_adapter_apply(const ccp_adapter *ad, ccp_transform *t, ccp_buf *err);

#endif
