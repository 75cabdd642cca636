#ifndef CCP_VERSION_H
#define CCP_VERSION_H
#define CCP_VERSION "0.1.0"
#endif
