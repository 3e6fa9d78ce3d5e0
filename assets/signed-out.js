// The signed-out page (after a sign-out that signs the user out of apps
// by front-channel logout): once every app's hidden logout frame has
// loaded, or after three seconds, the browser goes on to where the
// "Continue" link points (the sign-in page, or the app's
// post_logout_redirect_uri). Loaded before the frames, so it sees every
// one of them load: a frame's `load` does not bubble, but the document
// sees it on the way down (capture).
(function () {
  'use strict';
  var WAIT_MS = 3000;
  var loaded = 0;
  var total = -1;
  var gone = false;

  function go() {
    var next = document.getElementById('signed-out-continue');
    if (gone || !next) {
      return;
    }
    gone = true;
    window.location.replace(next.href);
  }

  function check() {
    if (total >= 0 && loaded >= total) {
      go();
    }
  }

  document.addEventListener('load', function (event) {
    var t = event.target;
    if (t && t.tagName === 'IFRAME' && t.classList.contains('frontchannel')) {
      loaded += 1;
      check();
    }
  }, true);

  document.addEventListener('DOMContentLoaded', function () {
    total = document.querySelectorAll('iframe.frontchannel').length;
    check();
    window.setTimeout(go, WAIT_MS);
  });
}());
