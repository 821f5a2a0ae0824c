// Account settings: sessions, password, email, privacy and account deletion (protocol §11).
// `page` is what app.js shares with this module.

export function setupSettings(page) {}
