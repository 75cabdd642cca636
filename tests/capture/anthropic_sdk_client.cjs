// Drives @anthropic-ai/sdk against the capture server.
// Run: NODE_PATH=/tmp/clients/node_modules CAPTURE_URL=http://127.0.0.1:8765 node anthropic_sdk_client.cjs
const Anthropic = require('@anthropic-ai/sdk');
const baseURL = process.env.CAPTURE_URL || 'http://127.0.0.1:8765';
const params = {
  model: 'claude-sonnet-4-6',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'say ok' }],
};
(async () => {
  const keyClient = new Anthropic({ apiKey: 'sk-ant-test-capture', authToken: null, baseURL });
  // 1. non-stream, x-api-key
  const m = await keyClient.messages.create(params);
  console.log('non-stream:', m.content[0].text);
  // 2. stream: true via create(), x-api-key
  const s = await keyClient.messages.create({ ...params, stream: true });
  let t = '';
  for await (const ev of s) if (ev.type === 'content_block_delta') t += ev.delta.text;
  console.log('stream(create):', t);
  // 3. messages.stream() helper, x-api-key
  const st = keyClient.messages.stream(params);
  const fin = await st.finalMessage();
  console.log('stream(helper):', fin.content[0].text);
  // 4. authToken (Authorization: Bearer), non-stream
  const bearer = new Anthropic({ apiKey: null, authToken: 'sk-ant-test-capture', baseURL });
  const b = await bearer.messages.create(params);
  console.log('bearer non-stream:', b.content[0].text);
  // 5. authToken, stream
  const bs = await bearer.messages.create({ ...params, stream: true });
  t = '';
  for await (const ev of bs) if (ev.type === 'content_block_delta') t += ev.delta.text;
  console.log('bearer stream:', t);
  // 6. count_tokens and models.list
  const ct = await keyClient.messages.countTokens({ model: params.model, messages: params.messages });
  console.log('count_tokens:', ct.input_tokens);
  const models = await keyClient.models.list();
  console.log('models:', models.data.map((x) => x.id).join(','));
})().catch((e) => { console.error('ERROR', e); process.exit(1); });
