// Passkeys in the console: adding one on the account page (navigator.credentials.create) and
// signing in with one as the second factor (navigator.credentials.get). The server makes the
// options and keeps their challenge; this script only carries them to the authenticator and its
// answer back, as JSON, to the same site. Without JavaScript (or passkey support) the pages keep
// their plain forms: the TOTP code signs in, and the account page says a passkey needs a browser
// that can make one.
(function () {
  "use strict";

  function toBytes(value) {
    var b64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: toBytes(d.id), transports: d.transports };
    });
  }

  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    o.excludeCredentials = descriptors(o.excludeCredentials);
    return o;
  }

  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.allowCredentials = descriptors(o.allowCredentials);
    return o;
  }

  function asJSON(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) { response.userHandle = toText(r.userHandle); }
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined
    };
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (data) {
        if (!answer.ok) {
          throw new Error(data.detail || "The server refused the passkey.");
        }
        return data;
      });
    });
  }

  function showError(message) {
    var box = document.getElementById("passkey-error");
    if (box) {
      box.textContent = message;
      box.hidden = false;
      box.focus();
    }
  }

  function failed(error) {
    if (error && error.name === "NotAllowedError") {
      showError("The passkey was not used (it was cancelled, or took too long). Try again.");
    } else if (error && error.name === "InvalidStateError") {
      showError("This device already holds one of your passkeys.");
    } else {
      showError((error && error.message) || "The passkey could not be used.");
    }
  }

  function enhanceAccount(form) {
    var needsJs = document.getElementById("passkey-needs-js");
    if (needsJs) { needsJs.hidden = true; }
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var csrf = form.elements.namedItem("csrf").value;
      var name = form.elements.namedItem("name").value;
      if (button) { button.disabled = true; }
      post(form.dataset.options, { csrf: csrf })
        .then(function (options) {
          return navigator.credentials.create({ publicKey: creationOptions(options) });
        })
        .then(function (credential) {
          return post(form.action, { csrf: csrf, name: name, credential: asJSON(credential) });
        })
        .then(function (data) { window.location.assign(data.location); })
        .catch(function (error) {
          if (button) { button.disabled = false; }
          failed(error);
        });
    });
  }

  function enhanceSignIn(section) {
    var button = document.getElementById("passkey-use");
    var needsJs = document.getElementById("passkey-needs-js");
    if (!button) { return; }
    if (needsJs) { needsJs.hidden = true; }
    button.hidden = false;
    button.addEventListener("click", function () {
      button.disabled = true;
      post(section.dataset.options)
        .then(function (options) {
          return navigator.credentials.get({ publicKey: requestOptions(options) });
        })
        .then(function (credential) {
          return post(section.dataset.verify, {
            credential: asJSON(credential), next: section.dataset.next || ""
          });
        })
        .then(function (data) { window.location.assign(data.location); })
        .catch(function (error) {
          button.disabled = false;
          failed(error);
        });
    });
  }

  function enhance() {
    if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) {
      return;
    }
    var box = document.getElementById("passkey-error");
    if (box) { box.setAttribute("tabindex", "-1"); }
    var form = document.getElementById("passkey-add");
    if (form) { enhanceAccount(form); }
    var section = document.getElementById("passkey-sign-in");
    if (section) { enhanceSignIn(section); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhance);
  } else {
    enhance();
  }
})();
