/**
 * The proxy environment for a fenced command: the variables the common runtimes and tools
 * read, in both cases (curl reads only lowercase `http_proxy`, for the httpoxy reason; Go and
 * Python read either; Node ≥ 24 and 22.21 honour them only with NODE_USE_ENV_PROXY=1).
 *
 * NO_PROXY is set to empty, not to "localhost": an inherited `NO_PROXY=*` would exempt every
 * destination, and an exemption for loopback would let the command reach any local service
 * (another proxy, a socket forwarder, a cloud-metadata shim on 127.0.0.1) without the gateway
 * seeing it. Loopback destinations go through the gateway too, which refuses them unless the
 * policy excepts them.
 */
export function proxyEnv(proxyUrl: string, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'FTP_PROXY']) {
    env[k] = proxyUrl;
    env[k.toLowerCase()] = proxyUrl;
  }
  env.NO_PROXY = '';
  env.no_proxy = '';
  env.NODE_USE_ENV_PROXY = '1';
  // npm and yarn keep their own proxy settings (npmrc), which the environment overrides.
  env.npm_config_proxy = proxyUrl;
  env.npm_config_https_proxy = proxyUrl;
  env.npm_config_noproxy = '';
  env.YARN_HTTP_PROXY = proxyUrl;
  env.YARN_HTTPS_PROXY = proxyUrl;
  env.PIP_PROXY = proxyUrl;
  env.CARGO_HTTP_PROXY = proxyUrl;
  // git: an http.proxy in ~/.gitconfig would win over http_proxy; GIT_CONFIG_COUNT entries
  // (git ≥ 2.31) take precedence over every config file. Appended after any the caller set.
  const n = Number.parseInt(base.GIT_CONFIG_COUNT ?? '0', 10);
  const i = Number.isInteger(n) && n >= 0 ? n : 0;
  env.GIT_CONFIG_COUNT = String(i + 1);
  env[`GIT_CONFIG_KEY_${i}`] = 'http.proxy';
  env[`GIT_CONFIG_VALUE_${i}`] = proxyUrl;
  // The JVM reads neither variable; its system properties are passed through JAVA_TOOL_OPTIONS.
  const u = new URL(proxyUrl);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port || '80';
  const jvm = `-Dhttp.proxyHost=${host} -Dhttp.proxyPort=${port} -Dhttps.proxyHost=${host} -Dhttps.proxyPort=${port}`;
  env.JAVA_TOOL_OPTIONS = base.JAVA_TOOL_OPTIONS ? `${base.JAVA_TOOL_OPTIONS} ${jvm}` : jvm;
  return env;
}

/** Checks `--proxy`: an http:// URL with a host and port, nothing else. */
export function parseProxyUrl(text: string): URL | null {
  let u: URL;
  try { u = new URL(text); } catch { return null; }
  if (u.protocol !== 'http:' || u.hostname === '' || u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) return null;
  return u;
}
