/* Steps for the OpenAI Responses body (the Codex service). */
#include "steps.h"

const ccp_step_type *const ccp_steps_codex[] = {NULL};
