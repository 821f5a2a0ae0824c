// People: contacts, contact requests, group invitations and blocking (protocol §11).
// `page` is what app.js shares with this module.

export function setupPeople(page) {}
