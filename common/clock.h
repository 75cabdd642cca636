/* clock: the one monotonic clock every timer and duration is measured on
 * (never the wall clock, which jumps). */
#ifndef CCP_CLOCK_H
#define CCP_CLOCK_H

long long ccp_now_ms(void);
long long ccp_now_ns(void);

#endif
