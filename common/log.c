#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static ccp_log_level min_level = CCP_LOG_INFO;
static ccp_log_format format = CCP_LOG_JSON;
static bool log_bodies = false;
static size_t body_cap = 4096;
static const char *service_name = "ccproxy";

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void ccp_log_init(const ccp_config *cfg, const char *service)
{
    min_level = cfg->log_level;
    format = cfg->log_format;
    log_bodies = cfg->environment == CCP_ENV_TEST;
    body_cap = cfg->log_body_max_bytes;
    service_name = service;
}

bool ccp_log_enabled(ccp_log_level level)
{
    return level >= min_level;
}

/* The formatted second is kept per thread: a busy loop logs many lines
 * in one second, and gmtime_r takes glibc's time-zone lock. */
static void timestamp(ccp_buf *b)
{
    static _Thread_local time_t last_sec = -1;
    static _Thread_local char last[64]; /* "YYYY-MM-DDTHH:MM:SS." */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != last_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(last, sizeof last, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        last_sec = tv.tv_sec;
    }
    ccp_buf_append_str(b, last);
    int ms = (int)(tv.tv_usec / 1000);
    char m[4] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z'};
    ccp_buf_append(b, m, 4);
}

static void write_all(const char *p, size_t left)
{
    while (left > 0) {
        ssize_t n = write(STDERR_FILENO, p, left);
        if (n <= 0) break;
        p += n;
        left -= (size_t)n;
    }
}

/* A loop thread's lines wait in its batch until ccp_log_flush at the end of
 * the round: one write(2) for all the requests a round finished. A batch
 * stays within PIPE_BUF, the size a pipe writes without interleaving it
 * with another thread's write, so lines stay whole on a pipe too. */
#define BATCH_MAX 4096
static _Thread_local bool batching;
static _Thread_local ccp_buf batch;
/* Each thread builds its lines in one buffer it keeps (line_buf). */
static _Thread_local ccp_buf line;

void ccp_log_batch(bool on)
{
    if (!on) {
        ccp_log_flush();
        /* A thread's buffers are its own: one about to end gives them back. */
        ccp_buf_free(&batch);
        ccp_buf_free(&line);
    }
    batching = on;
}

void ccp_log_flush(void)
{
    if (batch.len) write_all(batch.data, batch.len);
    batch.len = 0;
}

static void emit(ccp_buf *b)
{
    ccp_buf_append_char(b, '\n');
    if (!batching || b->len > BATCH_MAX) {
        ccp_log_flush(); /* the order of one thread's lines holds */
        write_all(b->data, b->len);
        return;
    }
    if (batch.len + b->len > BATCH_MAX) ccp_log_flush();
    ccp_buf_append(&batch, b->data, b->len);
}

static void begin(ccp_buf *b, ccp_log_level level, const char *event)
{
    if (format == CCP_LOG_JSON) {
        ccp_buf_append_str(b, "{\"time\":\"");
        timestamp(b);
        ccp_buf_append_str(b, "\",\"level\":\"");
        ccp_buf_append_str(b, level_names[level]);
        ccp_buf_append_str(b, "\",\"event\":\"");
        ccp_buf_append_str(b, event);
        ccp_buf_append_str(b, "\",\"service\":\"");
        ccp_buf_append_str(b, service_name);
        ccp_buf_append_char(b, '"');
    } else {
        timestamp(b);
        ccp_buf_printf(b, " %-7s %s %s", level_names[level], service_name, event);
    }
}

/* ,"k": (JSON) or  k= (console): what every field starts with. */
static void key(ccp_buf *b, const char *k)
{
    if (format == CCP_LOG_JSON) {
        ccp_buf_append(b, ",\"", 2);
        ccp_buf_append_str(b, k);
        ccp_buf_append(b, "\":", 2);
    } else {
        ccp_buf_append_char(b, ' ');
        ccp_buf_append_str(b, k);
        ccp_buf_append_char(b, '=');
    }
}

/* Appends one field; console values are quoted only when they hold spaces. */
static void field_str(ccp_buf *b, const char *k, const char *v, size_t n)
{
    key(b, k);
    bool quote = format == CCP_LOG_JSON || n == 0 || memchr(v, ' ', n) != NULL;
    if (quote) ccp_buf_append_char(b, '"');
    ccp_buf_append_json_escaped(b, v, n);
    if (quote) ccp_buf_append_char(b, '"');
}

static void field_cstr(ccp_buf *b, const char *k, const char *v)
{
    field_str(b, k, v, strlen(v));
}

static void field_int(ccp_buf *b, const char *k, long long v)
{
    key(b, k);
    ccp_buf_append_int(b, v);
}

static void field_bool(ccp_buf *b, const char *k, bool v)
{
    key(b, k);
    ccp_buf_append_str(b, v ? "true" : "false");
}

/* Milliseconds with two decimals, as "%.2f" prints them. */
static void field_ms(ccp_buf *b, const char *k, double v)
{
    key(b, k);
    if (!(v >= 0 && v < 1e15)) { /* NaN, negative or huge: printf knows best */
        ccp_buf_printf(b, "%.2f", v);
        return;
    }
    long long hundredths = (long long)(v * 100 + 0.5);
    ccp_buf_append_int(b, hundredths / 100);
    char frac[3] = {'.', (char)('0' + hundredths % 100 / 10), (char)('0' + hundredths % 10)};
    ccp_buf_append(b, frac, 3);
}

static void finish(ccp_buf *b)
{
    if (format == CCP_LOG_JSON) ccp_buf_append_char(b, '}');
    emit(b);
}

/* The thread's line buffer, empty; only one grown far past the usual size
 * (a logged body) is given back first. */
static ccp_buf *line_buf(void)
{
    if (line.cap > 64 * 1024) ccp_buf_free(&line);
    ccp_buf_reset(&line);
    return &line;
}

void ccp_log_event(ccp_log_level level, const char *event, const char *fmt, ...)
{
    if (level < min_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ccp_buf *b = line_buf();
    begin(b, level, event);
    field_cstr(b, "message", msg);
    finish(b);
}

void ccp_log_event_json(ccp_log_level level, const char *event, const char *json_members)
{
    if (level < min_level) return;
    ccp_buf *b = line_buf();
    begin(b, level, event);
    ccp_buf_append_char(b, format == CCP_LOG_JSON ? ',' : ' ');
    ccp_buf_append_str(b, json_members);
    finish(b);
}

static void body_field(ccp_buf *b, const char *k, const char *truncated_key, const char *body, size_t len)
{
    if (!log_bodies || !body) return;
    size_t n = len < body_cap ? len : body_cap;
    /* Never cut inside a UTF-8 sequence: the line must stay valid text. */
    while (n < len && n > 0 && ((unsigned char)body[n] & 0xC0) == 0x80) n--;
    field_str(b, k, body, n);
    if (n < len) field_bool(b, truncated_key, true);
}

/* "usage":{"input":..,"output":..,"cache_read":..,"cache_creation":..},
 * with "reasoning" when the upstream named it; console: usage=in/out/... */
static void usage_field(ccp_buf *b, const ccp_usage *u)
{
    bool json = format == CCP_LOG_JSON;
    ccp_buf_append_str(b, json ? ",\"usage\":{" : " usage=");
    for (int k = 0; k < CCP_TOKEN_KINDS; k++) {
        if (k == CCP_TOKENS_REASONING && !u->reasoning_seen) continue;
        if (k) ccp_buf_append_char(b, ',');
        if (json) ccp_buf_append_char(b, '"');
        ccp_buf_append_str(b, ccp_token_kind_name((ccp_token_kind)k));
        ccp_buf_append_str(b, json ? "\":" : ":");
        ccp_buf_append_int(b, u->tokens[k]);
    }
    if (json) ccp_buf_append_char(b, '}');
}

void ccp_log_request(const ccp_request_log *r)
{
    ccp_log_level level = r->status >= 500 ? CCP_LOG_ERROR : r->status >= 400 ? CCP_LOG_WARNING : CCP_LOG_INFO;
    /* A refused WebSocket handshake is routine, not a problem: the Codex
     * CLI's built-in provider opens every session with one. */
    if (r->status == 426) level = CCP_LOG_INFO;
    if (level < min_level) return;
    ccp_buf *b = line_buf();
    begin(b, level, "request");
    field_cstr(b, "adapter", r->adapter ? r->adapter : "-");
    field_cstr(b, "method", r->method ? r->method : "-");
    field_cstr(b, "path", r->path ? r->path : "-");
    if (r->model) field_cstr(b, "model", r->model);
    if (r->stream >= 0) field_bool(b, "stream", r->stream != 0);
    if (r->message_count >= 0) field_int(b, "message_count", r->message_count);
    if (r->user_agent) field_cstr(b, "user_agent", r->user_agent);
    field_int(b, "status", r->status);
    field_ms(b, "duration_ms", r->duration_ms);
    if (r->ttfb_ms >= 0) field_ms(b, "upstream_ttfb_ms", r->ttfb_ms);
    field_int(b, "bytes_out", (long long)r->bytes_out);
    if (r->bytes_in) field_int(b, "bytes_in", (long long)r->bytes_in);
    if (r->request_id) field_cstr(b, "request_id", r->request_id);
    if (r->upstream_request_id) field_cstr(b, "upstream_request_id", r->upstream_request_id);
    if (r->usage) usage_field(b, r->usage);
    if (r->key_fp) field_cstr(b, "key_fp", r->key_fp);
    if (r->upstream) field_cstr(b, "upstream", r->upstream);
    if (r->attempts > 0) field_int(b, "attempts", r->attempts);
    if (r->failover) field_cstr(b, "failover", r->failover);
    if (r->error) field_cstr(b, "error", r->error);
    body_field(b, "request_body", "request_body_truncated", r->request_body, r->request_body_len);
    body_field(b, "response_body", "response_body_truncated", r->response_body, r->response_body_len);
    finish(b);
}
