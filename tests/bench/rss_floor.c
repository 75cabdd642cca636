/* rss_floor: the idle RSS a process has from the responder's libraries
 * alone, for make bench to print beside the responder's idle RSS.
 *
 * It links what a responder links (libfcgi, libcurl and its dependencies,
 * json-c, OpenSSL) and initialises them as a responder does before its
 * first request: curl's global state and a share handle, one multi and one
 * easy handle, SHA-256 and an HMAC, a JSON document parsed. Then it prints
 * its own Rss lines from /proc/self/status and exits. What the responder
 * has above this is its own (threads, configuration, counters). */
#include <curl/curl.h>
#include <fcgiapp.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    CURLSH *share = curl_share_init();
    CURLM *multi = curl_multi_init();
    CURL *easy = curl_easy_init();
    if (!share || !multi || !easy) return 1;
    curl_easy_setopt(easy, CURLOPT_SHARE, share);
    curl_multi_add_handle(multi, easy);

    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!md || !EVP_Digest("key", 3, d, &n, md, NULL)) return 1;
    if (!HMAC(EVP_sha256(), "k", 1, (const unsigned char *)"m", 1, d, &n)) return 1;
    json_object *o = json_tokener_parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    if (!o) return 1;
    (void)FCGX_IsCGI();

    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 1;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0 || strncmp(line, "RssAnon:", 8) == 0 || strncmp(line, "RssFile:", 8) == 0 ||
            strncmp(line, "RssShmem:", 9) == 0)
            fputs(line, stdout);
    fclose(f);

    json_object_put(o);
    EVP_MD_free(md);
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    curl_share_cleanup(share);
    curl_global_cleanup();
    return 0;
}
