// The browser half of gatehouse's passkeys (src/users/passkey.rs is the
// server's). A form marked <form data-passkey="register|authenticate"
// data-options-url="..." action="..."> is taken over on submit: it posts
// its fields (the CSRF token among them) to data-options-url, hands the
// options it gets back to the authenticator, puts the answer in its hidden
// `credential` input as JSON and is then submitted as a normal form.
// Loaded as a file of its own: the pages' CSP allows no inline script.
(function () {
  'use strict';

  function toBuffer(b64url) {
    var b64 = b64url.replace(/-/g, '+').replace(/_/g, '/');
    var raw = atob(b64 + '==='.slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = '';
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // The options come as JSON with binary fields in base64url; the
  // WebAuthn API wants ArrayBuffers.
  function decodeOptions(options) {
    options.challenge = toBuffer(options.challenge);
    if (options.user) options.user.id = toBuffer(options.user.id);
    ['excludeCredentials', 'allowCredentials'].forEach(function (key) {
      if (!options[key]) return;
      options[key] = options[key].map(function (c) {
        return Object.assign({}, c, { id: toBuffer(c.id) });
      });
    });
    return options;
  }

  // RegistrationResponseJSON / AuthenticationResponseJSON, the fields
  // webauthn_rp's relaxed parser reads.
  function encodeCredential(cred) {
    var r = cred.response;
    var response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = r.userHandle && r.userHandle.byteLength ? toBase64url(r.userHandle) : null;
    }
    return JSON.stringify({
      id: cred.id,
      rawId: toBase64url(cred.rawId),
      type: cred.type,
      response: response,
      authenticatorAttachment: cred.authenticatorAttachment || null,
      clientExtensionResults: cred.getClientExtensionResults()
    });
  }

  function find(form, selector) {
    return form.querySelector(selector) || document.querySelector(selector);
  }

  function showError(form, message) {
    var el = find(form, '[data-passkey-error]');
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
  }

  function explain(error) {
    if (error && error.name === 'NotAllowedError') return 'The passkey request was cancelled or timed out.';
    if (error && error.name === 'InvalidStateError') return 'This authenticator already holds a passkey for this account.';
    return 'The passkey did not work. Please try again.';
  }

  // A hidden field marked data-checked-from="ID" carries whether the
  // checkbox ID (on the page, perhaps in another form) is ticked: the
  // sign-in page's one "remember me" serves its passkey form too.
  function copyChecks(form) {
    form.querySelectorAll('input[data-checked-from]').forEach(function (input) {
      var box = document.getElementById(input.getAttribute('data-checked-from'));
      input.value = box && box.checked ? '1' : '';
    });
  }

  async function run(form) {
    copyChecks(form);
    var params = new URLSearchParams(new FormData(form));
    params.delete('credential');
    var res = await fetch(form.getAttribute('data-options-url'), {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: params.toString()
    });
    if (!res.ok) throw new Error('options request failed: ' + res.status);
    var publicKey = decodeOptions(await res.json());
    var cred = form.getAttribute('data-passkey') === 'register'
      ? await navigator.credentials.create({ publicKey: publicKey })
      : await navigator.credentials.get({ publicKey: publicKey });
    if (!cred) throw new Error('no credential');
    var input = form.querySelector('input[name="credential"]');
    if (!input) {
      input = document.createElement('input');
      input.type = 'hidden';
      input.name = 'credential';
      form.appendChild(input);
    }
    input.value = encodeCredential(cred);
    copyChecks(form);
    form.submit();
  }

  // A passkey belongs to a host name: browsers refuse an IP address.
  function byAddress() {
    var h = location.hostname;
    return /^[0-9.]+$/.test(h) || h.indexOf(':') >= 0 || h.charAt(0) === '[';
  }

  function setUp(form) {
    if (!window.PublicKeyCredential || !window.isSecureContext || byAddress()) {
      var note = find(form, '[data-passkey-unavailable]');
      if (note && byAddress()) {
        note.textContent = 'Passkeys need a host name: open this page by name (such as localhost), not by its address.';
      }
      if (note) note.hidden = false;
      form.querySelectorAll('button, input[type="submit"]').forEach(function (b) { b.disabled = true; });
      return;
    }
    var busy = false;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (busy) return;
      busy = true;
      var error = find(form, '[data-passkey-error]');
      if (error) error.hidden = true;
      run(form).catch(function (e) {
        busy = false;
        showError(form, explain(e));
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('form[data-passkey]').forEach(setUp);
  });
})();
