// Drives the openai SDK (Responses API) against the capture server.
// Run: NODE_PATH=/tmp/clients/node_modules CAPTURE_URL=http://127.0.0.1:8765 node openai_sdk_client.cjs
const OpenAI = require('openai');
const baseURL = (process.env.CAPTURE_URL || 'http://127.0.0.1:8765') + '/v1';
(async () => {
  const client = new OpenAI({ apiKey: 'sk-test-capture', baseURL });
  // 1. non-stream
  const r = await client.responses.create({ model: 'gpt-5', input: 'say ok' });
  console.log('non-stream:', r.output_text);
  // 2. stream: true via create()
  const s = await client.responses.create({ model: 'gpt-5', input: 'say ok', stream: true });
  let t = '';
  for await (const ev of s) if (ev.type === 'response.output_text.delta') t += ev.delta;
  console.log('stream(create):', t);
  // 3. responses.stream() helper with instructions + message-list input
  const st = client.responses.stream({
    model: 'gpt-5',
    instructions: 'You are terse.',
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'say ok' }] }],
  });
  const fin = await st.finalResponse();
  console.log('stream(helper):', fin.output_text);
})().catch((e) => { console.error('ERROR', e); process.exit(1); });
