/* status: what a function that can fail returns. CCP_OK, or CCP_ERR with
 * the reason in the caller's ccp_buf *err (one line, no trailing newline,
 * unless the function says it collects several). Depends on nothing, so a
 * module can fail without depending on configuration. */
#ifndef CCP_STATUS_H
#define CCP_STATUS_H

#define CCP_OK 0
#define CCP_ERR -1

#endif
